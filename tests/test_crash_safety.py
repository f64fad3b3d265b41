"""SIGKILL mid-run, then --resume: nothing half-written, at most one checkpoint interval lost,
and the resumed run ends where an uninterrupted one does (same RNG streams).

The killed run is a real ``didi-seq`` subprocess (a kill must not be able to run any
cleanup code); the resume and the uninterrupted reference run in process to save a
second interpreter start. Both are slow-marked (~10 s each on 2 busy cores, most of it
the subprocess importing torch) and run in .ci/run.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint
from didi_seq.io.checkpoint import LATEST_FILE, STATE_FILE, load_checkpoint
from didi_seq_cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def small_corpus(path):
    path.write_text("".join(f"line {i} of a small corpus: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    return path


def finished_steps(out_dir) -> list[int]:
    f = out_dir / "metrics.jsonl"
    if not f.exists():
        return []
    steps = []
    for line in f.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # a line the kill tore
    return steps


def kill_mid_run(args: list, out_dir, after_step: int, timeout: float = 180.0) -> int:
    """Start ``didi-seq ARGS`` and SIGKILL it once ``after_step`` steps are logged; returns the last logged step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "didi_seq_cli.main", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while max(finished_steps(out_dir), default=0) < after_step:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before step {after_step}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not reach step {after_step} in {timeout} s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return max(finished_steps(out_dir))


def assert_nothing_half_written(out_dir, ckpt_every: int, last_logged: int) -> int:
    """Every visible checkpoint loads completely; LATEST is at most one interval behind the log."""
    latest = (out_dir / LATEST_FILE).read_text().strip()
    visible = sorted(p for p in (out_dir / "checkpoints").iterdir() if not p.name.startswith("."))
    assert latest in [p.name for p in visible]
    for ckpt in visible:
        assert load_checkpoint(ckpt).state  # weights, config, provenance all parse
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
        assert state["step"] == int(ckpt.name.removeprefix("step_"))
    saved = load_checkpoint(out_dir).provenance["step"]
    assert 0 < saved <= last_logged and last_logged - saved <= ckpt_every, (saved, last_logged)
    return saved


def assert_resumed_run_is_tidy(out_dir, steps: int) -> None:
    assert finished_steps(out_dir) == list(range(1, steps + 1))  # lost steps were redone, logged once
    debris = [p.name for d in (out_dir, out_dir / "checkpoints") for p in d.iterdir() if p.name.startswith(".")]
    assert debris == []


def assert_same_weights(a, b, atol=1e-6) -> None:
    sa, sb = load_checkpoint(a).state, load_checkpoint(b).state
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=atol), k


def kill_resume_and_run_straight(tmp_path, common: list, steps: int, every: int, after_step: int):
    """SIGKILL a run mid-way, check what it left, resume it to the end, and compare with an
    uninterrupted run of the same command; returns both run directories."""
    killed = tmp_path / "killed"
    last = kill_mid_run([*common, "--out", killed], killed, after_step=after_step)
    assert last < steps
    assert_nothing_half_written(killed, every, last)
    r = runner.invoke(app, [*map(str, common), "--out", str(killed), "--resume"])
    assert r.exit_code == 0, r.output
    assert_resumed_run_is_tidy(killed, steps)
    straight = tmp_path / "straight"
    r = runner.invoke(app, [*map(str, common), "--out", str(straight)])
    assert r.exit_code == 0, r.output
    assert_same_weights(killed, straight)
    return killed, straight


def test_distill_survives_sigkill(tmp_path):
    teacher = build_tiny_checkpoint(tmp_path / "teacher")
    corpus = small_corpus(tmp_path / "corpus.txt")
    steps, every = 40, 5
    common = ["distill", "--domain", "text", "--teacher", teacher, "--corpus", corpus, "--steps", steps,
              "--ckpt-every", every, "--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 3, "--threads", 1]
    killed, straight = kill_resume_and_run_straight(tmp_path, common, steps, every, after_step=17)
    from safetensors.torch import load_file

    da, db = (load_file(str(load_checkpoint(p).path / "discriminator.safetensors")) for p in (killed, straight))
    assert all(torch.allclose(da[k], db[k], atol=1e-6) for k in da)


def test_pretrain_survives_sigkill(tmp_path):
    """Checkpoints every 2 steps, so the kill often lands inside a checkpoint write."""
    corpus = small_corpus(tmp_path / "corpus.txt")
    steps, every = 40, 2
    common = ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", corpus, "--steps", steps,
              "--ckpt-every", every, "--threads", 1]
    kill_resume_and_run_straight(tmp_path, common, steps, every, after_step=15)
