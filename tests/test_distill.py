"""The distiller's pieces with known answers, the trainer end to end, resume, and bad input."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint, one_error_line
from didi_seq.distill.objective import grouped_advantages, omega, rewards, sample_tau
from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.models.process import LogLinearSchedule
from didi_seq_cli.main import app

runner = CliRunner()
FAST = ["--batch-size", "2", "--group-size", "2", "--disc-warmup-steps", "1", "--threads", "1"]


def distill(*args):
    return runner.invoke(app, ["distill", "--domain", "text", *map(str, args)])


def test_grouped_advantages_standardise_within_groups_and_clip():
    a = grouped_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]), group=4)
    s = torch.tensor([1.0, 2.0, 3.0, 4.0]).std()
    assert torch.allclose(a[:4], (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / s, atol=1e-5)
    assert torch.equal(a[4:], torch.zeros(4))  # a group with no spread gives no signal
    outlier = grouped_advantages(torch.tensor([0.0] * 15 + [100.0]), group=16, clip=3.0)
    assert outlier[-1].item() == 3.0 and outlier[0].item() < 0


def test_rewards_clip_log_odds_and_average_over_masked_positions_only():
    logits = torch.tensor([[20.0, -20.0, 1.0], [0.5, 0.5, 0.5], [3.0, 3.0, 3.0]])
    masked = torch.tensor([[True, False, True], [True, True, True], [False, False, False]])
    r = rewards(logits, masked, clip=8.0)
    assert r[0].item() == pytest.approx((8.0 + 1.0) / 2, abs=1e-4)  # +20 clipped to 8, the unmasked −20 ignored
    assert r[1].item() == pytest.approx(0.5, abs=1e-4)
    assert r[2].item() == 0.0  # nothing masked: nothing to judge


def test_omega_and_pi():
    sched = LogLinearSchedule()
    t = torch.tensor([0.5, 0.01, 0.99], dtype=torch.float64)
    w = omega(t, sched, "elbo")
    assert w[0].item() == pytest.approx(2.0, rel=1e-6) and w[1].item() == 10.0 and w[2].item() == pytest.approx(1 / 0.99, rel=1e-6)
    assert torch.equal(omega(t, sched, "constant"), torch.ones(3, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    beta22 = sample_tau(200_000, 2, 2, 0.0, 1.0, g)
    assert beta22.mean().item() == pytest.approx(0.5, abs=0.005) and beta22.var().item() == pytest.approx(0.05, abs=0.002)
    uniform = sample_tau(200_000, 1, 1, 0.0, 1.0, g)
    assert uniform.var().item() == pytest.approx(1 / 12, abs=0.002)
    assert sample_tau(200_000, 2, 5, 0.0, 1.0, g).mean().item() == pytest.approx(2 / 7, abs=0.005)
    clamped = sample_tau(10_000, 1, 1, 0.02, 0.98, g)
    assert clamped.min().item() >= 0.02 and clamped.max().item() <= 0.98


def test_distill_writes_a_student_with_discriminator_and_metrics(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    r = distill("--teacher", tiny_ckpt, "--out", out, "--steps", 3, "--ckpt-every", 3, *FAST)
    assert r.exit_code == 0, r.output
    ckpt = out / "checkpoints" / "step_0000003"
    for name in ("model.safetensors", "config.json", "provenance.json", "discriminator.safetensors", "discriminator.json",
                 "training_state.pt", "tokenizer.json"):
        assert (ckpt / name).exists(), name
    student = load_checkpoint(out)
    assert student.config["kind"] == "student" and student.provenance["teacher"]["sha256"]
    assert student.provenance["distill_config"]["score_decomposition"] is True
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert "reward" not in metrics[0] and {"reward", "kl", "entropy", "disc_acc"} <= set(metrics[-1])
    # the student samples through the ordinary loader and sampler
    s = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(out), "--nfe", "4", "--num-samples", "2"])
    assert s.exit_code == 0, s.output


def final(out):
    ckpt = load_checkpoint(out)
    from safetensors.torch import load_file

    return ckpt.state, load_file(str(ckpt.path / "discriminator.safetensors"))


def test_resume_continues_exactly(tiny_ckpt, tmp_path):
    """N steps straight == k steps, stop, --resume to N (warm-up covers both, so the lr agrees)."""
    common = ["--teacher", tiny_ckpt, "--ckpt-every", 2, *FAST]
    assert distill("--out", tmp_path / "a", "--steps", 4, *common).exit_code == 0
    assert distill("--out", tmp_path / "b", "--steps", 2, *common).exit_code == 0
    r = distill("--out", tmp_path / "b", "--steps", 4, "--resume", *common)
    assert r.exit_code == 0, r.output
    (sa, da), (sb, db) = final(tmp_path / "a"), final(tmp_path / "b")
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    assert all(torch.allclose(da[k], db[k], atol=1e-6) for k in da)


@pytest.mark.parametrize("switches", [
    ["--no-score-decomposition", "--no-coupled-time", "--omega", "constant", "--pi", "uniform", "--regularization", "none"],
    ["--positive", "teacher", "--teacher-pool", 8, "--teacher-pool-nfe", 8, "--regularization", "forward"],
    ["--regularization", "reverse", "--no-bf16"],
])
def test_every_ablation_switch_runs(tiny_ckpt, tmp_path, switches):
    extra = ["--steps", 2, "--ckpt-every", 2, *FAST]
    r = distill("--teacher", tiny_ckpt, "--out", tmp_path / "r", *map(str, switches), *extra)
    assert r.exit_code == 0, r.output
    cfg = load_checkpoint(tmp_path / "r").provenance["distill_config"]
    if "--no-coupled-time" in switches:
        assert cfg["coupled_time"] is False and cfg["score_decomposition"] is False and cfg["omega"] == "constant"
    if "teacher" in switches:
        assert cfg["positive"] == "teacher"
    assert cfg["bf16"] is ("--no-bf16" not in switches)  # bf16 is an option of didi-instruct too


def test_nan_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tiny_ckpt, tmp_path, monkeypatch):
    import didi_seq.distill.didi_instruct.trainer as trainer

    real = trainer.grouped_advantages
    calls = {"n": 0}

    def poisoned(r, group, clip=3.0):
        calls["n"] += 1
        return real(r, group, clip) * (math.nan if calls["n"] >= 3 else 1.0)

    monkeypatch.setattr(trainer, "grouped_advantages", poisoned)
    out = tmp_path / "run"
    r = distill("--teacher", tiny_ckpt, "--out", out, "--steps", 6, "--ckpt-every", 2, *FAST)
    one_error_line(r, "not finite")
    assert "step_0000002" in r.stderr and (out / "LATEST").read_text().strip() == "step_0000002"
    assert load_checkpoint(out).provenance["step"] == 2


def test_bad_inputs(tiny_ckpt, tmp_path):
    one_error_line(distill("--steps", 0), "--steps must be a positive integer")
    one_error_line(distill("--group-size", 1, "--teacher", tiny_ckpt), "group size must be at least 2")
    one_error_line(distill("--pi", "beta99", "--teacher", tiny_ckpt), "--pi must be one of")
    other = build_tiny_checkpoint(tmp_path / "protein", domain="protein")
    one_error_line(distill("--teacher", other, "--out", tmp_path / "x"), "is a 'protein' checkpoint")
    wrong = build_tiny_checkpoint(tmp_path / "vocab", vocab_size=100, mask_id=99)
    one_error_line(distill("--teacher", wrong, "--out", tmp_path / "y"), "vocabulary mismatch")
    one_step = ["--steps", 1, "--disc-warmup-steps", 0]  # else refused: the student would never step
    assert distill("--teacher", tiny_ckpt, "--out", tmp_path / "z", "--ckpt-every", 1, *FAST, *one_step).exit_code == 0
    one_error_line(distill("--teacher", tiny_ckpt, "--out", tmp_path / "z", *one_step), "--resume")
    # resuming with a different teacher (other weights) is refused before any tensor is touched
    other_vocab = build_tiny_checkpoint(tmp_path / "v2", vocab_size=4096, seed=3)
    one_error_line(distill("--teacher", other_vocab, "--out", tmp_path / "z", "--steps", 2, "--resume"), "resume with the same --teacher")
