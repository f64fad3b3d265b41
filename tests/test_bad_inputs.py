"""Bad input through the CLI: one ``error:`` line on stderr, exit ≠ 0, existing files untouched.

Every case runs a real command (typer's runner, in process) next to a "precious" file or
run directory and checks byte for byte that nothing around it changed: a failure must not
create, truncate or replace anything the user already had.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint, one_error_line
from didi_seq_cli.main import app

runner = CliRunner()
# one-step runs: no discriminator-only warm-up, or distill refuses a run in which the student never steps
FAST_DISTILL = ["--batch-size", "2", "--group-size", "2", "--disc-warmup-steps", "0", "--threads", "1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def snapshot(root: Path) -> dict:
    """Every file under ``root`` (hidden ones included) with its content hash and mode."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()} | {
        str(p.relative_to(root)) + "/": None for p in sorted(root.rglob("*")) if p.is_dir()}


def fails_cleanly(root: Path, args: list, fragment: str):
    """Run the command and check the contract: one error line naming ``fragment``, ``root`` unchanged."""
    before = snapshot(root)
    result = invoke(*args)
    one_error_line(result, fragment)
    assert snapshot(root) == before, "a failing command changed files"
    return result


@pytest.fixture
def work(tmp_path, tiny_ckpt):
    """A workspace with a good checkpoint copy and a precious output file already in place."""
    shutil.copytree(tiny_ckpt, tmp_path / "good")
    (tmp_path / "precious.jsonl").write_text('{"text": "keep me"}\n')
    return tmp_path


def broken_copy(work: Path, name: str, edit) -> Path:
    target = work / name
    shutil.copytree(work / "good", target)
    edit(target)
    return target


def sample_into_precious(work: Path, checkpoint, *extra):
    return ["sample", "--domain", "text", "--nfe", 2, "--num-samples", 2, "--checkpoint", checkpoint,
            "--output", work / "precious.jsonl", *extra]


# -- checkpoints ---------------------------------------------------------------------------


def test_truncated_checkpoint(work):
    def truncate(d):
        f = d / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    bad = broken_copy(work, "truncated", truncate)
    fails_cleanly(work, sample_into_precious(work, bad), "truncated or not a safetensors file")


def test_zero_byte_weights(work):
    bad = broken_copy(work, "zero", lambda d: (d / "model.safetensors").write_bytes(b""))
    fails_cleanly(work, sample_into_precious(work, bad), "truncated or not a safetensors file")


def test_zero_byte_config(work):
    bad = broken_copy(work, "zeroconf", lambda d: (d / "config.json").write_bytes(b""))
    fails_cleanly(work, sample_into_precious(work, bad), "unreadable or not JSON")


def test_zero_byte_file_as_checkpoint(work):
    (work / "empty.safetensors").write_bytes(b"")
    fails_cleanly(work, sample_into_precious(work, work / "empty.safetensors"), "not a checkpoint any teacher format recognises")


def test_foreign_config_format(work):
    """A Hugging Face style config.json is not taken for a didi-seq checkpoint."""
    bad = broken_copy(work, "hf", lambda d: (d / "config.json").write_text(json.dumps({"model_type": "bert"})))
    fails_cleanly(work, sample_into_precious(work, bad), "not a checkpoint any teacher format recognises")


def test_torch_pickle_named_safetensors(work):
    bad = broken_copy(work, "pickled", lambda d: torch.save({"w": torch.zeros(2)}, d / "model.safetensors"))
    fails_cleanly(work, sample_into_precious(work, bad), "truncated or not a safetensors file")


def test_config_with_missing_fields(work):
    def strip(d):
        cfg = json.loads((d / "config.json").read_text())
        del cfg["model"], cfg["spec"]
        (d / "config.json").write_text(json.dumps(cfg))

    bad = broken_copy(work, "nofields", strip)
    fails_cleanly(work, sample_into_precious(work, bad), "config.json")


def test_checkpoint_from_another_domain(work):
    other = build_tiny_checkpoint(work / "protein", domain="protein")
    fails_cleanly(work, sample_into_precious(work, other), "is a 'protein' checkpoint, not 'text'")


def test_teacher_with_another_vocabulary(work):
    wrong = build_tiny_checkpoint(work / "vocab", vocab_size=300, mask_id=299)
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", wrong, "--out", work / "run", "--steps", 1,
                         "--disc-warmup-steps", 0], "vocabulary mismatch")


def test_teacher_with_another_mask_id(work):
    from didi_seq.registry.plugins import get_domain

    tok = get_domain("text").load_tokenizer(None)
    wrong = build_tiny_checkpoint(work / "mask", vocab_size=tok.vocab_size, mask_id=tok.mask_id - 1)
    fails_cleanly(work, sample_into_precious(work, wrong), f"mask id {tok.mask_id - 1}")


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
    """A 1-step DiDi-Instruct student of a tiny teacher (its discriminator is tied to that teacher)."""
    root = tmp_path_factory.mktemp("student")
    teacher = build_tiny_checkpoint(root / "teacher")
    corpus = root / "corpus.txt"  # small, so no time goes into packing the embedded corpus
    corpus.write_text("".join(f"line {i} of a small corpus for the tiny student\n" for i in range(40)))
    r = invoke("distill", "--domain", "text", "--teacher", teacher, "--corpus", corpus, "--out", root / "run", "--steps", 1,
               "--ckpt-every", 1, *FAST_DISTILL)
    assert r.exit_code == 0, r.output
    return root / "run"


def test_student_with_a_teacher_of_another_vocabulary(work, tiny_student):
    """RGAS rebuilds the student's discriminator on its teacher: a teacher of another vocab is refused."""
    wrong = build_tiny_checkpoint(work / "vocab", vocab_size=300, mask_id=299)
    fails_cleanly(work, sample_into_precious(work, tiny_student, "--sampler", "rgas", "--teacher", wrong),
                  "vocabulary mismatch")


def test_resume_with_a_teacher_of_another_mask_id(work, tiny_student):
    from didi_seq.registry.plugins import get_domain

    tok = get_domain("text").load_tokenizer(None)
    run = work / "run"
    shutil.copytree(tiny_student, run)
    other = build_tiny_checkpoint(work / "mask", vocab_size=tok.vocab_size, mask_id=tok.mask_id - 1)
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", other, "--out", run, "--steps", 2, "--resume"],
                  "vocabulary mismatch")


# -- data files ------------------------------------------------------------------------------


def protein_domain_or_skip():
    from didi_seq.registry.plugins import domains

    if "protein" not in domains():
        pytest.skip("FASTA corpora belong to the protein domain (issue 5), which is not installed yet")


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("invalid_letters.fasta", ">p1\nMKTAYIAKQR\n>p2\nMKT1@#AYB\n", "record 'p2' has invalid residue '1' at position 4"),
    ("no_records.fasta", "just some text, no '>' header\n", "no_records.fasta is not a FASTA file"),
])
def test_bad_fasta_corpus(work, name, content, fragment):
    """Runs once a protein plugin registers a domain: a bad FASTA corpus is one error line, nothing written."""
    protein_domain_or_skip()
    (work / name).write_text(content)
    fails_cleanly(work, ["pretrain", "--domain", "protein", "--preset", "tiny", "--steps", 1, "--corpus", work / name,
                         "--out", work / "o"], fragment)


def test_corpus_jsonl_with_a_broken_line(work):
    bad = work / "broken.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", bad, "--out", work / "o"],
                  "line 2 is not valid JSON")
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", work / "good", "--corpus", bad, "--out", work / "o",
                         "--steps", 1, "--disc-warmup-steps", 0], "line 2 is not valid JSON")


def test_samples_jsonl_with_a_broken_line(work):
    bad = work / "samples.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "cut off\n')
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", bad, "--output", work / "precious.jsonl"],
                  "line 3 is not valid JSON")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_corpus(work, content):
    for name in ("empty.jsonl", "empty.txt"):
        (work / name).write_bytes(content)
        fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", work / name, "--out", work / "o"],
                      "empty")
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", work / "good", "--corpus", work / "empty.txt",
                         "--out", work / "o", "--steps", 1, "--disc-warmup-steps", 0], "empty")


def test_empty_samples_file(work):
    (work / "none.jsonl").write_bytes(b"")
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "none.jsonl"], "empty")


# -- unknown names and bad numbers ----------------------------------------------------------


@pytest.mark.parametrize("command", ["sample", "pretrain", "distill", "evaluate"])
def test_unknown_domain(work, command):
    extra = {"sample": ["--nfe", 2], "evaluate": ["--samples", work / "precious.jsonl"]}.get(command, [])
    fails_cleanly(work, [command, "--domain", "klingon", *extra], "unknown domain 'klingon'; known domains: protein, text")


def test_unknown_judge(work):
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--judge", "no-such-judge",
                         "--reference-samples", 0], "unknown judge 'no-such-judge'")


def test_unknown_sampler(work):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--sampler", "euler"), "unknown or unavailable sampler 'euler'")


@pytest.mark.parametrize("command", ["sample", "pretrain", "distill", "evaluate"])
def test_unknown_device(work, command):
    args = {"sample": sample_into_precious(work, work / "good"),
            "evaluate": ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--reference-samples", 0],
            "pretrain": ["pretrain", "--domain", "text", "--preset", "tiny", "--out", work / "o"],
            "distill": ["distill", "--domain", "text", "--teacher", work / "good", "--out", work / "o"]}[command]
    fails_cleanly(work, [*args, "--device", "tpu"], "unknown --device 'tpu'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_a_gpu(work):
    fails_cleanly(work, [*sample_into_precious(work, work / "good"), "--device", "cuda"], "sees no CUDA GPU; use --device cpu")


@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_nfe_and_steps(work, value):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--nfe", value), "--nfe must be a positive integer")
    fails_cleanly(work, ["pretrain", "--domain", "text", "--steps", value, "--out", work / "o"], "--steps must be a positive integer")
    fails_cleanly(work, ["distill", "--domain", "text", "--steps", value, "--out", work / "o"], "--steps must be a positive integer")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf"])
def test_temperature_must_be_finite_and_positive(work, value):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--temperature", value),
                  "--temperature must be a finite number > 0")


# -- where outputs go ---------------------------------------------------------------------------


def output_commands(work: Path, target_dir: Path) -> list[list]:
    return [
        sample_into_precious(work, work / "good")[:-2] + ["--output", target_dir / "s.jsonl"],
        ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--output", target_dir / "r.json",
         "--reference-samples", 0],
        ["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--out", target_dir / "run"],
        ["distill", "--domain", "text", "--teacher", work / "good", "--steps", 1, "--out", target_dir / "run", *FAST_DISTILL],
    ]


def test_output_into_a_missing_directory(work):
    """--output files need an existing directory; pretrain/distill --out create missing parents (test_first_hour.py)."""
    for args in output_commands(work, work / "missing" / "deeper")[:2]:
        fails_cleanly(work, args, "does not exist")


@pytest.fixture
def read_only_dir(work):
    """A directory nobody may write to; root ignores permission bits, so it is also made immutable."""
    d = work / "ro"
    d.mkdir()
    (d / "old.txt").write_text("old\n")
    d.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(d)], capture_output=True).returncode != 0:
            d.chmod(0o755)
            pytest.skip("running as root without chattr +i: no way to make a directory read-only")
    try:
        yield d
    finally:
        if immutable:
            subprocess.run([shutil.which("chattr"), "-i", str(d)], check=True)
        d.chmod(0o755)


def test_output_into_a_read_only_directory(work, read_only_dir):
    for args in output_commands(work, read_only_dir):
        fails_cleanly(work, args, "is not writable")


# -- pickles ----------------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_resume_refuses_a_code_executing_pickle(work, tiny_student, monkeypatch):
    run = work / "run"
    shutil.copytree(tiny_student, run)
    state = next((run / "checkpoints").glob("step_*")) / "training_state.pt"
    torch.save({"step": _Evil()}, state)
    monkeypatch.chdir(work)
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", tiny_student.parent / "teacher", "--out", run,
                         "--steps", 3, "--resume"], "cannot resume from")
    assert not (work / "pwned-by-pickle").exists()
