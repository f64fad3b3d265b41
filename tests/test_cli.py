"""The CLI contract (docs/usage.md "Commands") and its bad-input behaviour."""

import json

import pytest
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq_cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def test_sample_writes_contract_records(tiny_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 4, "--num-samples", 5,
               "--seed", 7, "--output", out)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 5
    for rec in recs:
        assert isinstance(rec["text"], str) and rec["nfe"] == 4 and rec["seed"] == 7
        assert rec["checkpoint"].startswith("tiny-test@")


def test_sample_embedded_teacher(tmp_path):
    out = tmp_path / "s.jsonl"
    r = invoke("sample", "--domain", "text", "--checkpoint", "teacher", "--nfe", 8, "--num-samples", 3,
               "--output", out)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 3 and all(len(rec["text"]) > 100 for rec in recs)
    assert all(rec["checkpoint"].startswith("text-teacher@") for rec in recs)


@pytest.mark.parametrize("domain", ["text", "protein"])
def test_embedded_models_fit_the_artifact_budget(domain):
    """Each shipped teacher and student directory (student: weights + discriminator) is ≤ 30 MB."""
    from didi_seq.registry.plugins import get_domain

    dom = get_domain(domain)
    for path in (dom.embedded_teacher, dom.embedded_student):
        if path is not None and path.exists():
            assert sum(f.stat().st_size for f in path.glob("*.safetensors")) <= 30 * 2**20, path


def test_unknown_domain_lists_known():
    one_error_line(invoke("sample", "--domain", "klingon", "--nfe", 4), "known domains: protein, text")


@pytest.mark.parametrize("nfe", [0, -3])
def test_non_positive_nfe(nfe):
    one_error_line(invoke("sample", "--domain", "text", "--nfe", nfe), "--nfe must be a positive integer")


def test_missing_checkpoint(tmp_path):
    one_error_line(invoke("sample", "--domain", "text", "--nfe", 2, "--checkpoint", tmp_path / "nope"), "not found")


def test_corrupt_checkpoint_leaves_output_untouched(tiny_ckpt, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_ckpt, bad)
    (bad / "model.safetensors").write_bytes(b"garbage")
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    r = invoke("sample", "--domain", "text", "--nfe", 2, "--checkpoint", bad, "--output", out)
    one_error_line(r, "truncated or not a safetensors file")
    assert out.read_text() == "precious\n"


def test_output_in_missing_directory(tiny_ckpt, tmp_path):
    r = invoke("sample", "--domain", "text", "--nfe", 2, "--checkpoint", tiny_ckpt, "--output",
               tmp_path / "no" / "s.jsonl")
    one_error_line(r, "does not exist")


def test_plugins_lists_text():
    r = invoke("plugins")
    assert r.exit_code == 0 and "text" in r.output and "native" in r.output


def test_uncached_hub_id_names_the_fix():
    one_error_line(invoke("sample", "--domain", "text", "--nfe", 2, "--checkpoint", "nobody/no-such-model"),
                   "not in the local Hugging Face cache")


def test_corpus_with_broken_json_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    r = invoke("pretrain", "--domain", "text", "--preset", "tiny", "--corpus", bad, "--out", tmp_path / "o")
    one_error_line(r, "line 2 is not valid JSON")


def test_sample_defaults_to_the_embedded_student_which_names_its_method(tmp_path):
    """The shipped student (representation-space MMD, the best at 16 steps in benchmarks/results/methods.md) is the
    default, and its records say how it was made. It has no discriminator, so RGAS asks for a DiDi-Instruct student
    (RGAS rebuilding a shipped discriminator on the embedded teacher: tests/test_example_plugin.py)."""
    out = tmp_path / "s.jsonl"
    r = invoke("sample", "--domain", "text", "--nfe", 4, "--num-samples", 2, "--output", out)
    assert r.exit_code == 0, r.output
    first = json.loads(out.read_text().splitlines()[0])
    assert first["checkpoint"].startswith("text-student@") and first["method"] == "mmd"
    before = out.read_bytes()
    r = invoke("sample", "--domain", "text", "--nfe", 4, "--num-samples", 2, "--sampler", "rgas", "--output", out)
    one_error_line(r, "RGAS needs a DiDi-Instruct student")
    assert out.read_bytes() == before
