"""RGAS: reduces exactly to the ancestral sampler without guidance; the CLI path; bad input."""

import json

import pytest
import torch
from typer.testing import CliRunner

from didi_seq.distill.networks import load_discriminator
from didi_seq.loading import load_teacher
from didi_seq.plugins import get_domain
from didi_seq.rgas import RGASConfig, rgas_sample
from didi_seq.sampling import SamplerConfig, ancestral_sample
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
    disc = load_discriminator(student.provenance["path"], dom)
    plain = ancestral_sample(student, 5, SamplerConfig(nfe=nfe, cache=False), torch.Generator().manual_seed(3))
    guided = rgas_sample(student, disc, 5, RGASConfig(nfe=nfe, guidance_start=0.0, guidance_end=0.0, candidates=1),
                         torch.Generator().manual_seed(3))
    assert torch.equal(plain.tokens, guided.tokens)
    assert guided.aux_calls == 0 and guided.network_calls == nfe


def test_rgas_guidance_changes_samples_and_counts_discriminator_calls(student_dir):
    dom = get_domain("text")
    student, _ = load_teacher(str(student_dir), dom)
    disc = load_discriminator(student.provenance["path"], dom)
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
    disc = load_discriminator(student.provenance["path"], dom)
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
    disc = load_discriminator(student.provenance["path"], dom)
    x0 = torch.full((2, student.spec.max_length), student.spec.mask_id)
    prefix = torch.tensor([t for t in range(10) if t != student.spec.mask_id][:5])
    x0[:, :5] = prefix  # a given prefix is kept (infilling the rest)
    r = rgas_sample(student, disc, 2, RGASConfig(nfe=4), torch.Generator().manual_seed(0), x_init=x0)
    assert torch.equal(r.tokens[:, :5], x0[:, :5]) and not (r.tokens == student.spec.mask_id).any()
