"""benchmarks/sdtt_target_gap.py: what an SDTT round can teach, against the enumerated targets of the toy."""

import sys
from pathlib import Path

import pytest
import torch
from distill_toy import MASK, SCHEDULE, STATES, V
from test_sdtt_exact import DELTA, MASKED, T, enumerated_targets, toy_teacher_fn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

ALL_MASK = int((STATES == MASK).all(-1).nonzero())


@torch.no_grad()
def exact_parts(fn):
    """KL(p_one ‖ g) and KL(m̄ ‖ p_one) at the three positions of the all-mask state, from the enumeration."""
    from sdtt_target_gap import kl_rows

    w, state, pos, target = enumerated_targets(fn, T, DELTA)
    mine = state == ALL_MASK
    w, pos, target = w[mine], pos[mine], target[mine]
    finite = torch.isfinite(target)
    arith = torch.zeros(3, V + 1).index_add(0, pos, w[:, None] * target.exp()).log()
    geo = torch.zeros(3, V + 1).index_add(0, pos, w[:, None] * torch.where(finite, target, 0.0))
    geo[:, MASK] = float("-inf")
    geo = torch.log_softmax(geo, -1)
    one = fn(STATES[[ALL_MASK]], MASKED[[ALL_MASK]], torch.tensor([T]))
    return kl_rows(one.double(), geo.double()), kl_rows(arith.double(), one.double())


def test_reducible_parts_match_the_enumerated_two_step_targets():
    """20k sampled targets of the all-mask state give the enumerated KL(p_one ‖ g) and KL(m̄ ‖ p_one) per position."""
    from sdtt_target_gap import target_decomposition

    fn = toy_teacher_fn()
    want_reverse, want_forward = exact_parts(fn)
    assert want_reverse.min() > 3e-4 and want_forward.min() > 0.1  # the toy leaves something to learn
    got = target_decomposition(fn, STATES[[ALL_MASK]], torch.tensor([T]), DELTA, 20_000, SCHEDULE, MASK,
                               torch.Generator().manual_seed(0))
    assert torch.allclose(got["reverse_reducible"], want_reverse, rtol=0.15, atol=5e-5)
    assert torch.allclose(got["forward_reducible"], want_forward, rtol=0.1)
    # the identities the docstring states: start − optimum = KL(p_one ‖ g); forward start = reducible + irreducible
    assert torch.allclose(got["reverse_start"] - got["reverse_optimum"], got["reverse_reducible"], atol=1e-6)
    assert torch.allclose(got["forward_start"], got["forward_reducible"] + got["forward_irreducible"], atol=1e-9)


def test_a_context_free_teacher_leaves_nothing_to_learn():
    """If the teacher ignores z_mid, every target is p_one: both losses and their reducible parts are 0."""
    from sdtt_target_gap import target_decomposition

    logits = torch.randn(3, V + 1, generator=torch.Generator().manual_seed(3))
    logits[:, MASK] = float("-inf")

    def fixed(z, masked, t):
        return torch.log_softmax(logits, -1).expand(len(z), -1, -1)[masked]

    got = target_decomposition(fixed, STATES[[ALL_MASK, 1 * 16 + 3 * 4 + 3]], torch.tensor([T, T]), DELTA, 64,
                               SCHEDULE, MASK, torch.Generator().manual_seed(0))
    for key in ("reverse_start", "reverse_reducible", "forward_start", "forward_reducible", "forward_irreducible"):
        assert got[key].abs().max().item() < 1e-6, key
    assert got["row"].tolist() == [0, 0, 0, 1, 1]


def test_the_table_reports_means_over_positions_with_row_cis(tmp_path):
    """``summarise`` weights rows by their masked positions (a row-mean bug would give 2.0, not 2.5)."""
    from sdtt_target_gap import COLUMNS, summarise

    part = {key: torch.tensor([1.0, 3.0, 3.0, 3.0], dtype=torch.float64) for key in COLUMNS}
    part["row"] = torch.tensor([0, 1, 1, 1])
    out = summarise([part], 2, torch.Generator().manual_seed(0))
    assert out["reverse_start"]["value"] == pytest.approx(2.5)
    assert out["reverse_start"]["ci"][0] <= 2.5 <= out["reverse_start"]["ci"][1]


def test_student_steps_give_the_delta_of_the_round_that_trains_them():
    """The 64 → 32 → 16 → 8 curriculum: round r's Δ (the trainer's ``round_delta``) for a 32 / 2^r-step student."""
    from sdtt_target_gap import delta_for

    from didi_seq.distill.sdtt import round_delta

    assert [delta_for(32 // 2 ** r) for r in range(3)] == [round_delta(r, 64) for r in range(3)]


def test_extrapolation_removes_a_one_over_m_bias():
    """Values r + c/M at M = 4 and 16 give back r, per NFE, from the smallest and largest M only."""
    from sdtt_target_gap import extrapolated_rows

    def row(nfe, m, r, c):
        v = {"value": r + c / m}
        return {"nfe": nfe, "draws": m, "reverse_start": {"value": 0.1}, "reverse_reducible": v,
                "forward_reducible": {"value": 2 * r + c / m}}

    out = extrapolated_rows([row(32, 4, 0.003, 0.12), row(32, 8, 0.5, 0.0), row(32, 16, 0.003, 0.12), row(8, 4, 0.01, 0.3)])
    assert len(out) == 1 and out[0]["draws"] == [4, 16]
    assert out[0]["reverse_reducible"] == pytest.approx(0.003) and out[0]["forward_reducible"] == pytest.approx(0.006)
