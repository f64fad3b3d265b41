"""benchmarks/joint_gap.py: one factorised step against the teacher's K finer steps, on the enumerable toy."""

import math
import sys
from pathlib import Path

import pytest
import torch
from distill_toy import MASK, SCHEDULE, L, denoiser, tiny_dit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

Z = torch.tensor([[MASK, MASK, MASK], [0, MASK, MASK], [MASK, 2, MASK], [MASK, MASK, 1]] * 8)
T = torch.linspace(0.3, 1.0, len(Z))


def test_one_teacher_step_is_the_factorised_step_itself():
    from joint_gap import step_nlls

    one, many, count = step_nlls(denoiser(tiny_dit(2, layers=2)), Z, T, 2, 1, SCHEDULE, MASK, torch.Generator().manual_seed(0))
    assert count.sum() > 0
    assert torch.allclose(one, many, atol=1e-9)  # the same tokens under the same prediction


def test_one_step_nll_is_the_teachers_log_prob_of_the_revealed_tokens(monkeypatch):
    """Against a direct sum: the teacher's own logits (mask forbidden) at the positions that changed."""
    import joint_gap

    from didi_seq.distill import objective

    model = tiny_dit(2, layers=2)
    paths = []
    real_rollout = objective.rollout

    def recorded_rollout(*args, **kwargs):  # keeps the path step_nlls drew, to read its z_s
        paths.append(real_rollout(*args, **kwargs))
        return paths[-1]

    monkeypatch.setattr(objective, "rollout", recorded_rollout)
    one, many, count = joint_gap.step_nlls(denoiser(model), Z, T, 2, 3, SCHEDULE, MASK, torch.Generator().manual_seed(1))
    z_s = paths[0].x
    with torch.no_grad():
        logits = model(Z, None).double()
    logits[..., MASK] = -math.inf
    lp = torch.log_softmax(logits, -1)
    for n in range(len(Z)):
        picked = [lp[n, i, z_s[n, i]] for i in range(L) if Z[n, i] == MASK and z_s[n, i] != MASK]
        assert count[n] == len(picked)
        assert one[n].item() == pytest.approx(-float(sum(picked, torch.tensor(0.0))), abs=1e-4)
    assert not torch.allclose(one, many)  # three steps see each other's tokens: another likelihood


def test_per_token_is_the_ratio_of_sums_with_a_bracketing_ci():
    from joint_gap import per_token

    nll = torch.tensor([2.0, 9.0, 4.0, 1.0], dtype=torch.float64)
    count = torch.tensor([1, 3, 2, 1])
    out = per_token(nll, count, torch.Generator().manual_seed(0))
    assert out["value"] == pytest.approx(16 / 7)
    assert out["ci"][0] <= out["value"] <= out["ci"][1] and out["ci"][0] >= 1.0 and out["ci"][1] <= 3.0
