"""Pretraining end to end on a tiny model: checkpoints, exact resume, bad corpora."""

import json
from pydoc_data.topics import topics

import torch
from typer.testing import CliRunner

from didi_seq.io.checkpoint import load_checkpoint
from didi_seq_cli.main import app

runner = CliRunner()


def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in list(topics.values())[:40]))
    return path


def run(*args):
    return runner.invoke(app, ["pretrain", "--domain", "text", "--preset", "tiny", *map(str, args)])


def final_state(out):
    return load_checkpoint(out).state


def test_pretrain_checkpoints_and_exact_resume(tmp_path):
    data = corpus(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    r = run("--corpus", data, "--out", straight, "--steps", 6, "--ckpt-every", 3)
    assert r.exit_code == 0, r.output
    assert (straight / "LATEST").read_text().strip() == "step_0000006"
    assert run("--corpus", data, "--out", split, "--steps", 3, "--ckpt-every", 3).exit_code == 0
    r = run("--corpus", data, "--out", split, "--steps", 6, "--ckpt-every", 3, "--resume")
    assert r.exit_code == 0, r.output
    a, b = final_state(straight), final_state(split)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    prov = load_checkpoint(straight).provenance
    assert prov["step"] == 6 and prov["validation_sha256"] and prov["val_nelbo"] > 0


def test_existing_run_needs_resume(tmp_path):
    data = corpus(tmp_path)
    assert run("--corpus", data, "--out", tmp_path / "r", "--steps", 2, "--ckpt-every", 2).exit_code == 0
    r = run("--corpus", data, "--out", tmp_path / "r", "--steps", 2)
    assert r.exit_code != 0 and "--resume" in r.stderr


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = run("--corpus", empty, "--out", tmp_path / "o", "--steps", 2)
    assert r.exit_code != 0
    assert r.stderr.strip().startswith("error: ") and "empty" in r.stderr
    assert not (tmp_path / "o").exists()


def test_non_positive_steps(tmp_path):
    r = run("--out", tmp_path / "o", "--steps", 0)
    assert r.exit_code != 0 and "--steps must be a positive integer" in r.stderr


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-pickle",))


def test_resume_refuses_code_executing_pickle(tmp_path, monkeypatch):
    data = corpus(tmp_path)
    out = tmp_path / "r"
    assert run("--corpus", data, "--out", out, "--steps", 2, "--ckpt-every", 2).exit_code == 0
    state = out / "checkpoints" / "step_0000002" / "training_state.pt"
    torch.save({"step": _Evil()}, state)
    monkeypatch.chdir(tmp_path)
    r = run("--corpus", data, "--out", out, "--steps", 4, "--resume")
    assert r.exit_code != 0 and r.stderr.startswith("error: cannot resume from")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_resume_refuses_a_changed_option_and_names_it(tmp_path):
    """A resumed run keeps its settings: a different value is one error line naming the option (only
    --steps and --threads may change); repeating the original options is fine."""
    from conftest import one_error_line

    data = corpus(tmp_path)
    out = tmp_path / "r"
    assert run("--corpus", data, "--out", out, "--steps", 2, "--ckpt-every", 2, "--lr", "2e-3").exit_code == 0
    for flags, named in ((["--lr", "1e-3"], "--lr 0.001 differs"), (["--no-bf16"], "--no-bf16 differs"),
                         (["--seed", "1"], "--seed 1 differs"), (["--length", "16"], "--length 16 differs"),
                         (["--batch-size", "4"], "--batch-size 4 differs")):
        one_error_line(run("--corpus", data, "--out", out, "--steps", 3, "--resume", *flags), named)
    one_error_line(runner.invoke(app, ["pretrain", "--domain", "text", "--preset", "small", "--corpus", str(data),
                                       "--out", str(out), "--steps", 3, "--resume"]), "--preset small differs")
    assert (out / "LATEST").read_text().strip() == "step_0000002"
    r = run("--corpus", data, "--out", out, "--steps", 3, "--resume", "--lr", "2e-3", "--threads", 1, "--seed", 0)
    assert r.exit_code == 0, r.output


def test_resume_refuses_another_corpus(tmp_path):
    from conftest import one_error_line

    data, other = corpus(tmp_path), tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": t}) + "\n" for t in list(topics.values())[40:80]))
    out = tmp_path / "r"
    assert run("--corpus", data, "--out", out, "--steps", 2, "--ckpt-every", 2).exit_code == 0
    one_error_line(run("--corpus", other, "--out", out, "--steps", 3, "--resume"), f"--corpus {other} differs from the run")
