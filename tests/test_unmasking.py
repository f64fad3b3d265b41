"""Unmasking schedules (the time grid) and the dilated unmasking order, each against an
independent calculation: the grid against MaskGIT's formulas, reveal steps against the exact
marginals of the grid, the dilated order against its spacing, and the dilated sampler's joint
against an enumerable toy whose exact conditionals it must reproduce when it reveals one
position per step."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from test_sampler import CRIT_P001, STAMP_PROBS, chi_square

from didi_seq.errors import DidiError
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import TeacherAdapter, TeacherSpec
from didi_seq.sampling.ancestral import SamplerConfig, ancestral_sample, time_grid
from didi_seq.sampling.dilated import DilatedSampler, bit_reversal_order, dilated_rank, reveal_counts


def test_linear_grid_is_unchanged():
    assert torch.equal(time_grid(16), torch.linspace(1.0, 0.0, 17, dtype=torch.float64))
    assert torch.equal(time_grid(16, "linear"), time_grid(16))


@pytest.mark.parametrize("schedule, formula", [
    ("cosine", lambda r: math.cos(math.pi / 2 * r)),
    ("poly:2", lambda r: 1 - r ** 2),
    ("poly:0.5", lambda r: 1 - math.sqrt(r)),
])
def test_schedules_follow_maskgit(schedule, formula):
    nfe = 8
    grid = time_grid(nfe, schedule)
    expected = [formula(k / nfe) for k in range(nfe + 1)]
    expected[-1] = 0.0
    assert grid.tolist() == pytest.approx(expected, abs=1e-15)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid[1:] < grid[:-1]).all()


@pytest.mark.parametrize("bad", ["cosin", "poly", "poly:", "poly:0", "poly:-1", "poly:nan", "poly:x", ""])
def test_unknown_schedule_is_refused(bad):
    with pytest.raises(DidiError, match="--schedule"):
        SamplerConfig(nfe=4, schedule=bad).validate()


class GridStampTeacher(TeacherAdapter):
    """p(x0 | x_t) = probs over C classes, written as token k·C + c at step k of ``grid`` (read off t),
    so the final tokens record the step that revealed each position and the class drawn there."""

    def __init__(self, probs, grid, length):
        self.C, self.grid = len(probs), grid
        V = self.C * (len(grid) - 1) + 1
        self.spec = TeacherSpec(vocab_size=V, mask_id=V - 1, max_length=length, time_conditioned=True)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.probs = torch.tensor(probs, dtype=torch.float64)

    def logits(self, x_t, t=None):
        out = torch.full((*x_t.shape, self.spec.vocab_size), -1e4)
        for row, tr in enumerate(t.double().tolist()):
            k = int((self.grid - tr).abs().argmin())
            out[row, :, k * self.C:(k + 1) * self.C] = self.probs.log().float()
        return out

    def student_copy(self):
        raise NotImplementedError


def grid_reveal_marginals(grid, schedule):
    """P(revealed at step k) = P(masked at t_k) − P(masked at t_k+1), P(masked at t) = (1 − α_t)/(1 − α_1)."""
    still = [float(schedule.mask_prob(t) / schedule.mask_prob(torch.tensor(1.0))) for t in grid]
    return torch.tensor([still[k] - still[k + 1] for k in range(len(grid) - 1)], dtype=torch.float64)


def test_ancestral_on_a_cosine_grid_reveals_by_that_grid():
    nfe, length, rows = 4, 3, 3000
    grid = time_grid(nfe, "cosine")
    teacher = GridStampTeacher(STAMP_PROBS, grid, length)
    out = ancestral_sample(teacher, rows, SamplerConfig(nfe=nfe, schedule="cosine"), torch.Generator().manual_seed(1)).tokens
    step_p = grid_reveal_marginals(grid, teacher.schedule)
    assert step_p[0] < 0.1 and step_p[-1] > 0.35  # cosine: few reveals early, many late (not the uniform 1/4)
    joint = (step_p[:, None] * torch.tensor(STAMP_PROBS, dtype=torch.float64)[None]).flatten()
    for pos in range(length):
        counts = torch.bincount(out[:, pos], minlength=len(joint)).double()
        assert chi_square(counts, joint) < CRIT_P001[len(joint) - 1], pos
    linear = ancestral_sample(teacher, rows, SamplerConfig(nfe=nfe), torch.Generator().manual_seed(1)).tokens
    counts = torch.bincount(linear[:, 0], minlength=len(joint)).double()  # negative control: the linear grid fails
    assert chi_square(counts, joint) > CRIT_P001[len(joint) - 1]


@pytest.mark.parametrize("n", list(range(1, 70)) + [256, 1000])
def test_bit_reversal_order_is_a_permutation(n):
    assert sorted(bit_reversal_order(n).tolist()) == list(range(n))


def test_bit_reversal_prefixes_are_evenly_spread():
    order = bit_reversal_order(256)
    for size in (2, 4, 16, 64):
        assert sorted(order[:size].tolist()) == list(range(0, 256, 256 // size))


def circular_gaps(positions, length):
    p = sorted(positions)
    return [(b - a) % length for a, b in zip(p, p[1:] + p[:1], strict=True)]


def test_dilated_sampler_reveals_far_apart_positions_in_exact_counts():
    """L = 16, K = 4: every step reveals exactly 4 positions per row, 4 apart (cyclically); the class
    drawn at every position follows p(x0); the random shift makes each position's step uniform."""
    nfe, length, rows = 4, 16, 2000
    teacher = GridStampTeacher(STAMP_PROBS, time_grid(nfe), length)
    start = torch.full((rows, length), teacher.spec.mask_id)
    out = DilatedSampler().sample(teacher, start, SamplerConfig(nfe=nfe), torch.Generator().manual_seed(1)).tokens
    steps, classes = out // teacher.C, out % teacher.C
    for row in steps[:50]:
        for k in range(nfe):
            revealed = (row == k).nonzero().flatten().tolist()
            assert len(revealed) == length // nfe
            assert circular_gaps(revealed, length) == [nfe] * len(revealed)
    counts = torch.bincount(classes.flatten(), minlength=teacher.C).double()
    assert chi_square(counts, torch.tensor(STAMP_PROBS, dtype=torch.float64)) < 13.82  # df 2, p = 0.001
    first_step = torch.bincount(steps[:, 0], minlength=nfe).double()
    assert chi_square(first_step, torch.full((nfe,), 1 / nfe, dtype=torch.float64)) < 16.27  # df 3, p = 0.001


def test_reveal_counts_are_the_rounded_expectation():
    masked = torch.tensor([[True] * 10 + [False] * 6, [True] * 3 + [False] * 13])
    assert reveal_counts(masked, 0.25).tolist() == [10 - round(10 * 0.75), 3 - round(3 * 0.75)]
    assert reveal_counts(masked, 1.0).tolist() == [10, 3]


def test_dilated_rank_covers_each_rows_own_masked_span():
    masked = torch.zeros(2, 10, dtype=torch.bool)
    masked[0, 1:9] = True  # a framed row: BOS, 8 masks, EOS
    masked[1, 1:4] = True
    rank = dilated_rank(masked, torch.tensor([0, 1]))
    assert sorted(rank[0, 1:9].tolist()) == list(range(8)) and sorted(rank[1, 1:4].tolist()) == list(range(3))
    assert (rank[~masked] == 10).all()
    assert rank[0, 1:9].tolist() == [0, 4, 2, 6, 1, 5, 3, 7]  # bit reversal of 8, no shift


class JointTeacher(TeacherAdapter):
    """Exact p(x_i | revealed positions) of a fixed joint over V^L: a perfect denoiser, time-agnostic."""

    def __init__(self, joint, V, L):
        self.V, self.L = V, L
        self.spec = TeacherSpec(vocab_size=V + 1, mask_id=V, max_length=L)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.states = torch.tensor(list(itertools.product(range(V), repeat=L)))
        self.joint = joint

    def logits(self, x_t, t=None):
        out = torch.full((*x_t.shape, self.V + 1), -1e9, dtype=torch.float32)
        for b, row in enumerate(x_t):
            known = row != self.spec.mask_id
            ok = (self.states[:, known] == row[known]).all(-1)
            w = self.joint * ok
            for i in range(self.L):
                p = torch.zeros(self.V, dtype=torch.float64).index_add_(0, self.states[:, i], w)
                out[b, i, :self.V] = (p / p.sum()).clamp_min(1e-30).log().float()
        return out

    def student_copy(self):
        raise NotImplementedError


def test_dilated_one_position_per_step_reproduces_the_joint():
    """With K = L steps each step reveals one position, drawn from its exact conditional: the joint is
    exact whatever the order. All positions in one step (K = 1) draw independently and must fail."""
    V, L, rows = 2, 3, 6000
    joint = torch.tensor([0.30, 0.02, 0.03, 0.15, 0.05, 0.10, 0.05, 0.30], dtype=torch.float64)
    teacher = JointTeacher(joint, V, L)
    start = torch.full((rows, L), teacher.spec.mask_id)
    crit = 24.32  # chi-square, 7 degrees of freedom, p = 0.001

    def state_counts(nfe):
        out = DilatedSampler().sample(teacher, start, SamplerConfig(nfe=nfe), torch.Generator().manual_seed(2)).tokens
        return torch.bincount((out * torch.tensor([V ** (L - 1 - i) for i in range(L)])).sum(-1), minlength=V ** L).double()

    assert chi_square(state_counts(L), joint) < crit
    assert chi_square(state_counts(1), joint) > crit


def test_dilated_cache_is_exact(tiny_ckpt):
    from didi_seq.models.loading import load_teacher
    from didi_seq.registry.plugins import get_domain

    teacher = load_teacher(str(tiny_ckpt), get_domain("text"))[0]
    start = torch.full((3, teacher.spec.max_length), teacher.spec.mask_id)
    for nfe in (1, 3, 16, 100):
        runs = [DilatedSampler().sample(teacher, start, SamplerConfig(nfe=nfe, cache=c), torch.Generator().manual_seed(4))
                for c in (True, False)]
        assert torch.equal(runs[0].tokens, runs[1].tokens)
        assert not (runs[0].tokens == teacher.spec.mask_id).any()


def test_cli_takes_the_schedule_and_the_dilated_sampler(tiny_ckpt, tmp_path):
    import json

    from test_cli import invoke

    out = tmp_path / "s.jsonl"
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 4, "--num-samples", 2,
               "--sampler", "dilated", "--schedule", "poly:2", "--output", out)
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["sampler"] == "dilated" and rec["dilated"] == {"schedule": "poly:2"}


@pytest.mark.parametrize("args, fragment", [
    (["--schedule", "cosin"], "--schedule must be linear, cosine or poly:P"),
    (["--sampler", "dilated", "--candidates", "4"], "--candidates is an option of --sampler rgas"),
])
def test_cli_refuses_a_bad_schedule_or_a_foreign_option(tiny_ckpt, tmp_path, args, fragment):
    from test_cli import invoke

    from conftest import one_error_line

    out = tmp_path / "s.jsonl"
    one_error_line(invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 4, "--output", out, *args),
                   fragment)
    assert not out.exists()


def checkpoint_with_generation_config(tiny_ckpt, tmp_path, content) -> Path:
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    (ckpt / "generation_config.json").write_text(content)
    return ckpt


def test_a_checkpoints_generation_config_picks_the_default_sampler(tiny_ckpt, tmp_path):
    """sample without --sampler takes the checkpoint's sampler and options; a flag or --sampler overrides them."""
    import json

    from test_cli import invoke

    ckpt = checkpoint_with_generation_config(
        tiny_ckpt, tmp_path, json.dumps({"sampler": "dilated", "sampler_options": {"schedule": "cosine"}}))

    def first_record(*args):
        out = tmp_path / "s.jsonl"
        r = invoke("sample", "--domain", "text", "--checkpoint", ckpt, "--nfe", 4, "--num-samples", 1, "--output", out, *args)
        assert r.exit_code == 0, r.output
        return json.loads(out.read_text().splitlines()[0])

    rec = first_record()
    assert rec["sampler"] == "dilated" and rec["dilated"] == {"schedule": "cosine"}
    flagged = first_record("--schedule", "linear")  # a flag overrides the file's option
    assert flagged["sampler"] == "dilated" and "dilated" not in flagged
    assert first_record("--sampler", "ancestral")["sampler"] == "ancestral"
    # the plain tiny checkpoint (no file) stays ancestral
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 4, "--num-samples", 1,
               "--output", tmp_path / "plain.jsonl")
    assert r.exit_code == 0 and json.loads((tmp_path / "plain.jsonl").read_text().splitlines()[0])["sampler"] == "ancestral"


def test_the_python_api_follows_the_generation_config(tiny_ckpt, tmp_path):
    import json

    from didi_seq.api import MaskedDiffusionModel

    ckpt = checkpoint_with_generation_config(tiny_ckpt, tmp_path, json.dumps({"sampler": "dilated"}))
    model = MaskedDiffusionModel.from_pretrained(str(ckpt), "text")
    assert model.sample(nfe=4, num_samples=1)[0]["sampler"] == "dilated"
    assert model.sample(nfe=4, num_samples=1, sampler="ancestral")[0]["sampler"] == "ancestral"
    saved = model.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "generation_config.json").read_text()) == {"sampler": "dilated"}


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not a readable JSON file"),
    ('{"sampler": 3}', "must hold"),
    ('{"sampler": "no-such"}', "unknown or unavailable sampler 'no-such'"),
    ('{"sampler": "dilated", "sampler_options": {"candidates": 4}}', "candidates"),
])
def test_a_bad_generation_config_is_one_error_line(tiny_ckpt, tmp_path, content, fragment):
    from test_cli import invoke

    from conftest import one_error_line

    ckpt = checkpoint_with_generation_config(tiny_ckpt, tmp_path, content)
    one_error_line(invoke("sample", "--domain", "text", "--checkpoint", ckpt, "--nfe", 4), fragment)
