import pytest
import torch

from didi_seq.errors import DidiError
from didi_seq.models.loading import load_teacher
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import TeacherAdapter, TeacherSpec
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, ancestral_sample, draw_categorical


class FixedTeacher(TeacherAdapter):
    """Every position predicts the same fixed distribution; counts network calls."""

    def __init__(self, probs, length=1):
        V = len(probs) + 1
        self.spec = TeacherSpec(vocab_size=V, mask_id=V - 1, max_length=length)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.row_logits = torch.log(torch.tensor([*probs, 1e-9]))
        self.calls = 0

    def logits(self, x_t, t=None):
        self.calls += 1
        return self.row_logits.expand(*x_t.shape, -1).clone()

    def student_copy(self):
        raise NotImplementedError


def chi_square(counts, probs):
    n = counts.sum()
    return float(((counts - n * probs) ** 2 / (n * probs)).sum())


PROBS = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01], dtype=torch.float64)
CRIT_DF4_P001 = 18.47  # chi-square critical value, 4 degrees of freedom, p = 0.001


def test_float64_draws_match_categorical():
    g = torch.Generator().manual_seed(0)
    draws = draw_categorical(PROBS.log().expand(40000, -1), g)
    counts = torch.bincount(draws, minlength=5).double()
    assert chi_square(counts, PROBS) < CRIT_DF4_P001


def test_chi_square_detects_wrong_distribution():
    g = torch.Generator().manual_seed(0)
    draws = draw_categorical(PROBS.log().expand(40000, -1), g)
    counts = torch.bincount(draws, minlength=5).double()
    assert chi_square(counts, torch.tensor([0.2] * 5, dtype=torch.float64)) > CRIT_DF4_P001


class StepStampTeacher(TeacherAdapter):
    """p(x0 | x_t) = PROBS over C classes, written as token k·C + c at grid step k (read off t).

    The final tokens then record, for every position, the step that revealed it and the class
    drawn there, so one run gives the joint (reveal step, class) distribution of every position.
    Time-conditioned, so no sampler may reuse a prediction made at another step.
    """

    def __init__(self, probs, nfe, length):
        self.C, self.nfe = len(probs), nfe
        V = self.C * nfe + 1
        self.spec = TeacherSpec(vocab_size=V, mask_id=V - 1, max_length=length, time_conditioned=True)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.probs = torch.tensor(probs, dtype=torch.float64)

    def logits(self, x_t, t=None):
        step = torch.round((1 - t.double()) * self.nfe).long()  # t = 1 − k/K on the uniform grid
        out = torch.full((*x_t.shape, self.spec.vocab_size), -1e4)
        for row, k in enumerate(step.tolist()):
            out[row, :, k * self.C:(k + 1) * self.C] = self.probs.log().float()
        return out

    def hidden(self, x_t, t=None):
        raise NotImplementedError

    def student_copy(self):
        raise NotImplementedError


def exact_reveal_marginals(nfe, schedule):
    """P(a position is revealed at step k), from the schedule alone: starting all-mask, it is still masked
    after step k with probability Π_{j≤k} (1 − p_j), p_j = (α(t_j+1) − α(t_j)) / (1 − α(t_j)), which
    telescopes to (1 − α(t_k+1)) / (1 − α(1))."""
    grid = [1 - k / nfe for k in range(nfe + 1)]
    still = [float(schedule.mask_prob(torch.tensor(t))) / float(schedule.mask_prob(torch.tensor(1.0))) for t in grid]
    return torch.tensor([still[k] - still[k + 1] for k in range(nfe)], dtype=torch.float64)


STAMP_PROBS, STAMP_NFE, STAMP_LEN, STAMP_ROWS = [0.6, 0.3, 0.1], 4, 3, 3000
CRIT_P001 = {11: 31.26, 15: 37.70}  # chi-square critical values at p = 0.001 by degrees of freedom


def stamp_samplers():
    """Every sampler that must follow the exact reveal schedule: name -> draw(teacher, num, generator) -> tokens.
    The registered ``ancestral`` and ``rgas`` run through the registry's ``sample``, as ``generate`` runs them."""
    from dataclasses import replace

    from didi_seq.registry.plugins import samplers
    from didi_seq.sampling.rgas import RGASConfig

    class NoDiscriminator(torch.nn.Module):
        def forward(self, *a):
            raise AssertionError("RGAS without guidance must not call its discriminator")

    registered = samplers()
    unguided = RGASConfig(nfe=STAMP_NFE, guidance_start=0.0, guidance_end=0.0, candidates=1)

    def start(tch, n):
        return torch.full((n, tch.spec.max_length), tch.spec.mask_id)

    return {
        "ancestral": lambda tch, n, g: registered["ancestral"].sample(tch, start(tch, n), SamplerConfig(nfe=STAMP_NFE), g).tokens,
        "ancestral-no-cache": lambda tch, n, g: ancestral_sample(tch, n, SamplerConfig(nfe=STAMP_NFE, cache=False), g).tokens,
        "rgas-unguided": lambda tch, n, g: replace(registered["rgas"], disc=NoDiscriminator()).sample(
            tch, start(tch, n), unguided, g).tokens,
    }


@pytest.mark.parametrize("sampler", ["ancestral", "ancestral-no-cache", "rgas-unguided"])
def test_sampler_reveal_schedule_and_draws_are_exact(sampler):
    """Multi-position toy: each position's (reveal step, class) must follow P(step k)·PROBS[c], and the
    reveal steps of two positions must be independent (the exact per-step marginals of the process)."""
    teacher = StepStampTeacher(STAMP_PROBS, STAMP_NFE, STAMP_LEN)
    out = stamp_samplers()[sampler](teacher, STAMP_ROWS, torch.Generator().manual_seed(1))
    assert out.shape == (STAMP_ROWS, STAMP_LEN) and out.max() < teacher.spec.mask_id  # every mask revealed, never emitted
    step_p = exact_reveal_marginals(STAMP_NFE, teacher.schedule)
    assert torch.allclose(step_p, torch.full((STAMP_NFE,), 1 / STAMP_NFE, dtype=torch.float64))  # log-linear: uniform
    joint = (step_p[:, None] * torch.tensor(STAMP_PROBS, dtype=torch.float64)[None]).flatten()
    for pos in range(STAMP_LEN):
        counts = torch.bincount(out[:, pos], minlength=len(joint)).double()
        assert chi_square(counts, joint) < CRIT_P001[len(joint) - 1], (sampler, pos)
    steps = out // teacher.C
    pair = torch.bincount(steps[:, 0] * STAMP_NFE + steps[:, 2], minlength=STAMP_NFE ** 2).double()
    assert chi_square(pair, torch.outer(step_p, step_p).flatten()) < CRIT_P001[STAMP_NFE ** 2 - 1], sampler


def test_reveal_schedule_test_detects_a_wrong_schedule():
    """Negative control: samples revealed on another schedule (here: all in one step) fail the chi-square."""
    teacher = StepStampTeacher(STAMP_PROBS, STAMP_NFE, STAMP_LEN)
    out = ancestral_sample(teacher, STAMP_ROWS, SamplerConfig(nfe=1), torch.Generator().manual_seed(1)).tokens
    joint = (exact_reveal_marginals(STAMP_NFE, teacher.schedule)[:, None] * torch.tensor(STAMP_PROBS)[None]).flatten()
    assert chi_square(torch.bincount(out[:, 0], minlength=len(joint)).double(), joint) > CRIT_P001[len(joint) - 1]


@pytest.fixture(scope="module")
def tiny_teacher(tiny_ckpt):
    return load_teacher(str(tiny_ckpt), get_domain("text"))[0]


@pytest.mark.parametrize("nfe", [1, 3, 16, 100])
def test_no_mask_left(tiny_teacher, nfe):
    r = ancestral_sample(tiny_teacher, 3, SamplerConfig(nfe=nfe), torch.Generator().manual_seed(0))
    assert not (r.tokens == tiny_teacher.spec.mask_id).any()
    assert r.tokens.shape == (3, tiny_teacher.spec.max_length)


def test_same_seed_same_output(tiny_teacher):
    a = ancestral_sample(tiny_teacher, 4, SamplerConfig(nfe=8), torch.Generator().manual_seed(5)).tokens
    b = ancestral_sample(tiny_teacher, 4, SamplerConfig(nfe=8), torch.Generator().manual_seed(5)).tokens
    c = ancestral_sample(tiny_teacher, 4, SamplerConfig(nfe=8), torch.Generator().manual_seed(6)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cache_is_exact_and_saves_calls(tiny_teacher):
    cfg = dict(nfe=64)
    with_cache = ancestral_sample(tiny_teacher, 4, SamplerConfig(**cfg, cache=True), torch.Generator().manual_seed(3))
    no_cache = ancestral_sample(tiny_teacher, 4, SamplerConfig(**cfg, cache=False), torch.Generator().manual_seed(3))
    assert torch.equal(with_cache.tokens, no_cache.tokens)
    assert no_cache.network_calls == 64
    # L=16 tokens over 64 steps: most steps reveal nothing in a given row
    assert with_cache.rows_evaluated < no_cache.rows_evaluated
    assert with_cache.network_calls < no_cache.network_calls


def test_greedy_final_step_takes_argmax():
    teacher = FixedTeacher(PROBS.tolist(), length=8)
    out = ancestral_sample(teacher, 50, SamplerConfig(nfe=1, final="greedy"), torch.Generator().manual_seed(0))
    assert (out.tokens == 0).all()  # one step reveals everything, greedily


def test_invalid_nfe():
    with pytest.raises(DidiError, match="positive"):
        SamplerConfig(nfe=0).validate()
