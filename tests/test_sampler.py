import pytest
import torch

from didi_seq.errors import DidiError
from didi_seq.loading import load_teacher
from didi_seq.plugins import get_domain
from didi_seq.process import LogLinearSchedule
from didi_seq.sampling import SamplerConfig, ancestral_sample, draw_categorical
from didi_seq.teacher import TeacherAdapter, TeacherSpec


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


def test_sampler_reproduces_teacher_distribution():
    teacher = FixedTeacher(PROBS.tolist(), length=1)
    out = ancestral_sample(teacher, 20000, SamplerConfig(nfe=4), torch.Generator().manual_seed(1)).tokens
    counts = torch.bincount(out.flatten(), minlength=6)[:5].double()
    assert out.max() < 5  # the mask id is never emitted
    assert chi_square(counts, PROBS) < CRIT_DF4_P001


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
