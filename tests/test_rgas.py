"""RGAS: reduces exactly to the ancestral sampler without guidance; the CLI path; bad input."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from didi_seq.models.loading import load_teacher
from didi_seq.models.networks import load_discriminator
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import TeacherAdapter, TeacherSpec
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, ancestral_sample
from didi_seq.sampling.rgas import RGASConfig, rgas_sample
from didi_seq_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def student_dir(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("rgas") / "run"
    r = runner.invoke(app, ["distill", "--domain", "text", "--teacher", str(tiny_ckpt), "--out", str(out), "--steps", "2",
                            "--ckpt-every", "2", "--batch-size", "2", "--group-size", "2", "--disc-warmup-steps", "1"])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("nfe", [4, 7])
def test_rgas_without_guidance_equals_ancestral(student_dir, nfe):
    dom = get_domain("text")
    student, _ = load_teacher(str(student_dir), dom)
    disc = load_discriminator(student.provenance.path, dom)
    plain = ancestral_sample(student, 5, SamplerConfig(nfe=nfe, cache=False), torch.Generator().manual_seed(3))
    guided = rgas_sample(student, disc, 5, RGASConfig(nfe=nfe, guidance_start=0.0, guidance_end=0.0, candidates=1),
                         torch.Generator().manual_seed(3))
    assert torch.equal(plain.tokens, guided.tokens)
    assert guided.aux_calls == 0 and guided.network_calls == nfe


def test_rgas_guidance_changes_samples_and_counts_discriminator_calls(student_dir):
    dom = get_domain("text")
    student, _ = load_teacher(str(student_dir), dom)
    disc = load_discriminator(student.provenance.path, dom)
    cfg = RGASConfig(nfe=8, guidance_start=5.0, guidance_end=5.0, rerank_ratio=0.5, candidates=3)
    r = rgas_sample(student, disc, 4, cfg, torch.Generator().manual_seed(3))
    plain = ancestral_sample(student, 4, SamplerConfig(nfe=8, cache=False), torch.Generator().manual_seed(3))
    assert not torch.equal(r.tokens, plain.tokens)
    assert (r.tokens != student.spec.mask_id).all()
    assert r.network_calls == 8 and r.aux_calls == 4 * 1 + 4 * 3  # 4 tilting calls, 4 re-ranking steps × M


def test_sample_cli_rgas_records(student_dir, tmp_path):
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(student_dir), "--nfe", "4", "--num-samples",
                            "2", "--sampler", "rgas", "--output", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["sampler"] == "rgas" and rec["rgas"]["candidates"] == 4 and rec["run"]["discriminator_calls"] > 0


def test_rgas_needs_a_student_with_a_discriminator(tiny_ckpt):
    r = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(tiny_ckpt), "--nfe", "4", "--sampler", "rgas"])
    assert r.exit_code != 0 and "holds no discriminator" in r.stderr
    r = runner.invoke(app, ["sample", "--domain", "text", "--nfe", "4", "--sampler", "magic"])
    assert r.exit_code != 0 and "unknown or unavailable sampler" in r.stderr


def test_rgas_cache_is_exact_and_temperature_flows_through(student_dir):
    """RGAS runs on the ancestral loop: the per-sequence cache (of the untilted prediction) changes the cost,
    never the samples; the temperature reaches its draws (h = 0, M = 1: the tempered ancestral sampler)."""
    dom = get_domain("text")
    student, _ = load_teacher(str(student_dir), dom)
    disc = load_discriminator(student.provenance.path, dom)
    cfg = dict(nfe=32, guidance_start=2.0, guidance_end=1.0, rerank_ratio=0.5, candidates=2)
    cached = rgas_sample(student, disc, 3, RGASConfig(**cfg), torch.Generator().manual_seed(5))
    uncached = rgas_sample(student, disc, 3, RGASConfig(**cfg, cache=False), torch.Generator().manual_seed(5))
    assert torch.equal(cached.tokens, uncached.tokens) and cached.aux_calls == uncached.aux_calls
    assert cached.rows_evaluated < uncached.rows_evaluated  # L = 16 over 32 steps: most steps change few rows
    plain = ancestral_sample(student, 4, SamplerConfig(nfe=6, temperature=0.5, cache=False), torch.Generator().manual_seed(1))
    guided = rgas_sample(student, disc, 4, RGASConfig(nfe=6, temperature=0.5, guidance_start=0.0, guidance_end=0.0, candidates=1),
                         torch.Generator().manual_seed(1))
    untempered = rgas_sample(student, disc, 4, RGASConfig(nfe=6, guidance_start=0.0, guidance_end=0.0, candidates=1),
                             torch.Generator().manual_seed(1))
    assert torch.equal(plain.tokens, guided.tokens) and not torch.equal(guided.tokens, untempered.tokens)


def test_rgas_starts_from_given_states(student_dir):
    dom = get_domain("text")
    student, _ = load_teacher(str(student_dir), dom)
    disc = load_discriminator(student.provenance.path, dom)
    x0 = torch.full((2, student.spec.max_length), student.spec.mask_id)
    prefix = torch.tensor([t for t in range(10) if t != student.spec.mask_id][:5])
    x0[:, :5] = prefix  # a given prefix is kept (infilling the rest)
    r = rgas_sample(student, disc, 2, RGASConfig(nfe=4), torch.Generator().manual_seed(0), x_init=x0)
    assert torch.equal(r.tokens[:, :5], x0[:, :5]) and not (r.tokens == student.spec.mask_id).any()


def test_prepare_takes_the_bundled_discriminator_first():
    """Every caller (CLI, benchmarks) prepares RGAS the same way: a discriminator shipped inside the
    checkpoint (DiDi-Instruct's HF release) is used before one saved beside a didi-seq student."""
    from types import SimpleNamespace

    from didi_seq.errors import DidiError
    from didi_seq.sampling.rgas import RGASSampler

    bundled = torch.nn.Linear(1, 1)
    adapter = SimpleNamespace(bundled_discriminator=lambda: bundled, device=torch.device("cpu"), provenance={})
    ready = RGASSampler().prepare(adapter, SimpleNamespace(name="text", length_model=None), RGASConfig(nfe=2))
    assert ready.disc is bundled and RGASSampler().disc is None
    with pytest.raises(DidiError, match="variable-length domain 'protein'"):
        RGASSampler().prepare(adapter, SimpleNamespace(name="protein", length_model=object()), RGASConfig(nfe=2))


class UniformStudent(TeacherAdapter):
    """p(x0 | x_t) uniform over tokens 0..3 (4 is the mask) at every position."""

    def __init__(self, length):
        self.spec = TeacherSpec(vocab_size=5, mask_id=4, max_length=length)
        self.schedule = LogLinearSchedule()
        self.provenance = {}

    def logits(self, x_t, t=None):
        return torch.zeros(*x_t.shape, 5)

    def hidden(self, x_t, t=None):
        raise NotImplementedError

    def student_copy(self):
        raise NotImplementedError


class LikesTokenZero(torch.nn.Module):
    """Per-position logit c·[token is 0]: soft tokens [B, L, V] (tilting) or ids [B, L] (re-ranking)."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, t):
        return self.c * (x[..., 0] if x.is_floating_point() else (x == 0).to(torch.float32))


def share_of_token_zero(tokens):
    return (tokens == 0).double().mean().item()


def test_rgas_tilting_moves_mass_towards_what_the_discriminator_likes():
    """Every step tilted by h = 4 towards D = Σ softmax(ℓ)_0: ∂D/∂ℓ_j = p_0(δ_0j − p_j) = (3/16, −1/16, …) at the
    uniform p, so token 0 gets e^{3h/16} / (e^{3h/16} + 3·e^{−h/16}) = 0.475 instead of 1/4 (a sign error: 0.109)."""
    h, rows, length = 4.0, 1000, 4
    cfg = RGASConfig(nfe=3, guidance_start=h, guidance_end=h, rerank_ratio=0.0, candidates=1)
    r = rgas_sample(UniformStudent(length), LikesTokenZero(1.0), rows, cfg, torch.Generator().manual_seed(0))
    expected = math.exp(3 * h / 16) / (math.exp(3 * h / 16) + 3 * math.exp(-h / 16))
    n = rows * length
    assert abs(share_of_token_zero(r.tokens) - expected) < 4.5 * math.sqrt(expected * (1 - expected) / n)
    assert r.aux_calls == 3  # one tilting call per step


def test_rgas_reranking_prefers_candidates_the_discriminator_scores_higher():
    """One step, M = 2 candidates of one uniform token, kept with probability softmax(c·[token is 0]):
    P(0) = 1/16 + (6/16)·σ(c) = 0.393 at c = 2 (preferring the lower score would give 0.107)."""
    c, rows = 2.0, 4000
    cfg = RGASConfig(nfe=1, rerank_ratio=1.0, candidates=2)
    r = rgas_sample(UniformStudent(1), LikesTokenZero(c), rows, cfg, torch.Generator().manual_seed(0))
    expected = 1 / 16 + 6 / 16 / (1 + math.exp(-c))
    assert abs(share_of_token_zero(r.tokens) - expected) < 4.5 * math.sqrt(expected * (1 - expected) / rows)
