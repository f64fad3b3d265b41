"""Sampling temperature: T divides the x0 prediction's logits before every draw, in every sampler.

Known answers: T → 0 follows the arg-max path (computed here, step by step, with the same
uniforms), T = 1 leaves today's samples unchanged, the draws follow softmax(log p / T), and
lowering T lowers the entropy of the samples.
"""

import json

import pytest
import torch
from test_sampler import PROBS, FixedTeacher, chi_square
from typer.testing import CliRunner

from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, ancestral_sample, time_grid
from didi_seq.sampling.contract import tempered
from didi_seq_cli.main import app

CRIT_DF4_P001 = 18.47
# Today's samples of FixedTeacher(PROBS, length=8), 3 rows, NFE 4, seed 0 (written by the sampler before
# temperature existed): T = 1 must reproduce them exactly.
PINNED = [[3, 0, 0, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 0, 1, 0]]


@pytest.fixture(scope="module")
def tiny_teacher(tiny_ckpt):
    return load_teacher(str(tiny_ckpt), get_domain("text"))[0]


def greedy_path(teacher, num: int, nfe: int, seed: int) -> torch.Tensor:
    """The ancestral reveal schedule with arg-max tokens, consuming the generator as the sampler does
    (one uniform per position for the reveals, then one per revealed position for the draws)."""
    spec, gen = teacher.spec, torch.Generator().manual_seed(seed)
    x = torch.full((num, spec.max_length), spec.mask_id)
    grid = time_grid(nfe)
    for k in range(nfe):
        masked = x == spec.mask_id
        if not masked.any():
            continue
        a_t, a_s = teacher.schedule.alpha(grid[k]), teacher.schedule.alpha(grid[k + 1])
        reveal = masked & (torch.rand(x.shape, dtype=torch.float64, generator=gen) < float((a_s - a_t) / (1 - a_t)))
        rows = masked.any(-1)  # what the sampler without its cache evaluates
        lp = teacher.masked_log_probs(x[rows], torch.full((int(rows.sum()),), float(grid[k])), masked[rows])
        if reveal.any():
            x[reveal] = lp[reveal[rows][masked[rows]]].argmax(-1)
            torch.rand(int(reveal.sum()), dtype=torch.float64, generator=gen)
    return x


def test_tempered_is_untouched_at_one_and_renormalised_otherwise():
    lp = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]]))
    assert tempered(lp, 1.0) is lp  # T = 1: the very same tensor, so draws are bit-identical
    half = tempered(lp, 0.5)
    expect = torch.tensor([0.49, 0.04, 0.01, 0.0], dtype=torch.float64) / 0.54  # p² / Σ p²
    assert torch.allclose(half.exp(), expect, atol=1e-12) and half[0, 3] == float("-inf")


def test_temperature_one_reproduces_pinned_samples():
    teacher = FixedTeacher(PROBS.tolist(), length=8)
    for cfg in (SamplerConfig(nfe=4), SamplerConfig(nfe=4, temperature=1.0)):
        assert ancestral_sample(teacher, 3, cfg, torch.Generator().manual_seed(0)).tokens.tolist() == PINNED


@pytest.mark.parametrize("nfe", [1, 5])
def test_small_temperature_follows_the_argmax_path(tiny_teacher, nfe):
    cold = ancestral_sample(tiny_teacher, 4, SamplerConfig(nfe=nfe, temperature=1e-6, cache=False), torch.Generator().manual_seed(2))
    assert torch.equal(cold.tokens, greedy_path(tiny_teacher, 4, nfe, seed=2))
    warm = ancestral_sample(tiny_teacher, 4, SamplerConfig(nfe=nfe), torch.Generator().manual_seed(2))
    assert not torch.equal(warm.tokens, cold.tokens)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_draws_follow_the_tempered_distribution(temperature):
    teacher = FixedTeacher(PROBS.tolist(), length=1)
    out = ancestral_sample(teacher, 20000, SamplerConfig(nfe=3, temperature=temperature), torch.Generator().manual_seed(1)).tokens
    counts = torch.bincount(out.flatten(), minlength=6)[:5].double()
    target = PROBS ** (1 / temperature)
    target = target / target.sum()
    assert chi_square(counts, target) < CRIT_DF4_P001
    assert chi_square(counts, PROBS) > CRIT_DF4_P001  # and not the untempered one


def test_lower_temperature_lowers_sample_entropy():
    teacher = FixedTeacher(PROBS.tolist(), length=1)

    def entropy(t: float) -> float:
        out = ancestral_sample(teacher, 8000, SamplerConfig(nfe=2, temperature=t), torch.Generator().manual_seed(4)).tokens
        p = torch.bincount(out.flatten(), minlength=5).double() / out.numel()
        return float(-(p[p > 0] * p[p > 0].log()).sum())

    h = [entropy(t) for t in (0.5, 1.0, 1.5)]
    assert h[0] < h[1] < h[2]


def test_native_sampler_at_small_temperature_takes_the_argmax():
    from didi_seq.models.process import framed_prior
    from didi_seq.models.teacher import TeacherSpec
    from didi_seq_protein.alphabet import ProteinTokenizer
    from didi_seq_protein.native_sampler import NativeConfig, NativeSampler

    tok = ProteinTokenizer()
    x0 = framed_prior([6, 9], tok.mask_id, tok.bos_id, tok.eos_id, tok.pad_id)
    table = torch.randn(x0.shape[1], tok.vocab_size, generator=torch.Generator().manual_seed(0))

    class Fixed:  # logits depend on the position only, so the arg-max sample is known
        spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=16, pad_id=tok.pad_id,
                           never_mask=[tok.bos_id, tok.eos_id], never_emit=list(tok.never_emit))
        device = torch.device("cpu")

        def logits(self, x):
            return table[: x.shape[1]].expand(x.shape[0], -1, -1).clone()

    allowed = table.clone()
    allowed[:, sorted({tok.mask_id, *tok.never_emit})] = float("-inf")
    residues = x0 == tok.mask_id
    sample = lambda t: NativeSampler().sample(Fixed(), x0, NativeConfig(nfe=4, temperature=t, repeat_threshold=None),  # noqa: E731
                                               torch.Generator().manual_seed(0)).tokens
    cold = sample(1e-6)
    assert torch.equal(cold[residues], allowed.argmax(-1).expand(2, -1)[residues])
    assert not torch.equal(sample(1.0)[residues], cold[residues])


def test_cli_records_the_temperature(tiny_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    runner = CliRunner()
    for t in ("1", "0.7"):
        r = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(tiny_ckpt), "--nfe", "4", "--num-samples", "2",
                                "--temperature", t, "--output", str(out)])
        assert r.exit_code == 0, r.output
        assert all(json.loads(line)["temperature"] == float(t) for line in out.read_text().splitlines())
