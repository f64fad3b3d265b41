"""LLaDA and Dream teachers distil (SDTT, MMD, DiDi-Instruct), and their students load back through the
same ``llada``/``dream`` format.

On the tiny random fixtures of ``test_dllm_teachers.py``; every number is compared with that file's
independent float64 forward (``reference_logits``): the denoiser's log-probs (Dream's shift
included), the MMD feature map (the residual stream after a block), and the distilled student's
logits as it loads back from its run directory, under the checkpoint's own tensor names.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from test_dllm_teachers import TEXT, WORDS, ids_with_masks, make_dream, make_llada, names, reference_logits
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.distill.method import MethodContext
from didi_seq.errors import DidiError
from didi_seq.models.loading import load_teacher
from didi_seq.training.distributed import Ranks
from didi_seq_cli.main import app

METHODS = {"sdtt": ["--batch-size", "2"], "mmd": ["--batch-size", "2"],
           "didi-instruct": ["--batch-size", "2", "--group-size", "2", "--disc-warmup-steps", "0"]}
LENGTH = 12  # shorter than either fixture's window (16, 24): --length is what sets the rows


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("dllm-distill")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(" ".join(WORDS[i:] + WORDS[:i]) + "\n" for i in range(30)))
    return {"llada": make_llada(root / "llada"), "dream": make_dream(root / "dream"), "corpus": corpus, "root": root}


def reference_log_probs(kind, state, cfg, x, adapter, positions=None, **wrong):
    """log p(x0 | x) [P, V] at ``positions`` (default: the masked ones), from the reference forward."""
    ref = reference_logits(kind, state, cfg, x, **wrong)
    ref[..., sorted({*adapter.spec.never_emit, adapter.spec.mask_id})] = -math.inf
    return torch.log_softmax(ref, -1)[x == adapter.spec.mask_id if positions is None else positions]


# --- the networks distillation uses ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_denoiser_gives_the_reference_log_probs_with_the_shift(fixtures, kind):
    directory, cfg, state, _ = fixtures[kind]
    adapter, _ = load_teacher(str(directory), TEXT)
    x = ids_with_masks(adapter.spec.mask_id)
    masked = x == adapter.spec.mask_id
    t = torch.full((x.shape[0],), 0.5, dtype=torch.float64)
    want = reference_log_probs(kind, state, cfg, x, adapter)
    for model in (adapter.model, adapter.student_copy()):  # the teacher, and the trainable copy of it
        got = adapter.denoiser(model)(x, masked, t)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    # identical all-mask rows (every rollout's start) are computed once, and still right
    full = torch.full((3, x.shape[1]), adapter.spec.mask_id)
    got = adapter.denoiser(adapter.model)(full, full == adapter.spec.mask_id, t[:1].repeat(3))
    assert got.shape == (3 * x.shape[1], adapter.spec.vocab_size)
    torch.testing.assert_close(got.double(), reference_log_probs(kind, state, cfg, full, adapter), rtol=1e-4, atol=1e-4)
    # ... but distinct rows are not, even when every position is asked for
    every = torch.ones_like(masked)
    got = adapter.denoiser(adapter.model)(x, every, t)
    torch.testing.assert_close(got.double(), reference_log_probs(kind, state, cfg, x, adapter, every), rtol=1e-4, atol=1e-4)
    # Dream's outputs are shifted: the unshifted reference is far off (so a lost shift fails above)
    if kind == "dream":
        wrong = reference_log_probs(kind, state, cfg, x, adapter, shift=False)
        assert (adapter.denoiser(adapter.model)(x, masked, t).double() - wrong).nan_to_num(0.0).abs().max() > 1e-2


@pytest.mark.parametrize("kind", ["llada", "dream"])
@pytest.mark.parametrize("block", [0, 1])
def test_trunk_features_are_the_residual_stream_after_the_block(fixtures, kind, block):
    directory, cfg, state, _ = fixtures[kind]
    adapter, _ = load_teacher(str(directory), TEXT)
    x = torch.randint(1, len(WORDS), (3, LENGTH), generator=torch.Generator().manual_seed(block))  # clean rows
    got = adapter.trunk_features(block)(x)
    torch.testing.assert_close(got.double(), reference_logits(kind, state, cfg, x, blocks=block + 1), rtol=1e-4, atol=1e-4)
    other = reference_logits(kind, state, cfg, x, blocks=2 - block)  # the other block's stream differs
    assert (got.double() - other).abs().max() > 1e-2
    with pytest.raises(DidiError, match=r"has 2 \(pass --mmd-feature-block 0..1\)"):
        adapter.trunk_features(2)


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_discriminator_trains_its_last_blocks_and_head_and_reloads_them(fixtures, kind):
    directory, cfg, state, _ = fixtures[kind]
    adapter, _ = load_teacher(str(directory), TEXT)
    disc = adapter.discriminator(1)
    trainable = {n for n, p in disc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("trunk.blocks.1.", "head.")) for n in trainable)
    assert set(disc.trainable_state()) >= trainable and not any(k.startswith("trunk.blocks.0.") for k in disc.trainable_state())
    x = ids_with_masks(adapter.spec.mask_id)
    t = torch.full((2,), 0.5)
    out = disc(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    # its trunk is the teacher's: the stream it feeds the head is the reference's after both blocks
    torch.testing.assert_close(disc.trunk.trunk(x).double(), reference_logits(kind, state, cfg, x, blocks=2), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        for p in disc.parameters():
            if p.requires_grad:
                p.add_(0.1)
    fresh = adapter.discriminator(1)
    assert not torch.equal(fresh(x, t), disc(x, t))
    fresh.load_trainable_state(disc.trainable_state(), "test")
    assert torch.equal(fresh(x, t), disc(x, t))


# --- distillation from the CLI, and the student it writes ------------------------------------

def distill(fixtures, kind, method, out, *more):
    return CliRunner().invoke(app, ["distill", "--domain", "text", "--teacher", str(fixtures[kind][0]), "--method", method,
                                    "--corpus", str(fixtures["corpus"]), "--out", str(out), "--steps", "2",
                                    "--threads", "1", "--length", str(LENGTH), *METHODS[method], *more])


@pytest.mark.parametrize("kind", ["llada", "dream"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_cli_distils_and_the_student_samples_and_reloads_exactly(fixtures, tmp_path, kind, method):
    directory, cfg, _, _ = fixtures[kind]
    out = tmp_path / "run"
    r = distill(fixtures, kind, method, out)
    assert r.exit_code == 0, r.output
    ckpt = out / "checkpoints" / "step_0000002"
    config = json.loads((ckpt / "config.json").read_text())
    assert config["model_type"] == cfg["model_type"] and config["kind"] == "student" and config["architecture"] == kind
    prov = json.loads((ckpt / "provenance.json").read_text())
    assert prov["method"] == method and prov["row_length"] == LENGTH

    samples = tmp_path / "s.jsonl"
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(out), "--nfe", "2", "--num-samples", "2",
                                 "--output", str(samples), "--threads", "1"])
    assert r.exit_code == 0, r.output
    student, _ = load_teacher(str(out), TEXT)
    assert student.provenance.format == kind and student.provenance.extra["kind"] == "student"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 2 and all(rec["checkpoint"] == student.provenance.id for rec in records)
    forbidden = {*student.spec.never_emit, student.spec.mask_id}
    assert not any(forbidden & set(rec["tokens"]) for rec in records)

    # the published weights: the checkpoint's own tensor names, bit for bit the run's EMA weights
    saved = load_file(str(ckpt / "model.safetensors"))
    assert {k: tuple(v.shape) for k, v in saved.items()} == names(kind, cfg)
    ema = torch.load(ckpt / "training_state.pt", weights_only=True)["ema"]
    loaded = student.model.state_dict()
    assert set(loaded) == set(ema) and all(torch.equal(loaded[k], ema[k].float()) for k in ema)
    # and the student computes what the reference computes from those tensors (Dream: shifted)
    x = ids_with_masks(student.spec.mask_id)
    want = reference_logits(kind, saved, cfg, x)
    torch.testing.assert_close(student.logits(x).double(), want, rtol=1e-4, atol=1e-4)
    if kind == "dream":
        assert student.shift and (student.logits(x).double() - reference_logits(kind, saved, cfg, x, shift=False)).abs().max() > 1e-2
    from didi_seq.api import MaskedDiffusionModel

    assert MaskedDiffusionModel.from_pretrained(out).id == student.provenance.id


def test_corpus_rows_use_the_checkpoints_tokenizer_at_the_row_length(fixtures):
    from tokenizers import Tokenizer

    directory = fixtures["llada"][0]
    adapter, tok = load_teacher(str(directory), TEXT)
    ctx = MethodContext(domain=TEXT, teacher=adapter, tokenizer=tok, corpus=str(fixtures["corpus"]), ranks=Ranks(), length=6)
    rows, meta = ctx.corpus_rows()
    first_doc = fixtures["corpus"].read_text().splitlines()[0]
    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(first_doc, add_special_tokens=False).ids
    assert len(rows[0]) == 6
    assert list(rows[0]) == [tok.bos_id, *ids[:4], tok.eos_id]  # the fixture's word ids, not the text domain's BPE
    assert MethodContext(domain=TEXT, teacher=adapter, tokenizer=tok, corpus=None, ranks=Ranks()).row_length == 16


def test_row_length_is_checked_and_kept_on_resume(fixtures, tmp_path):
    r = distill(fixtures, "llada", "mmd", tmp_path / "long", "--length", "17")  # the last --length wins
    one_error_line(r, "--length 17: training rows hold 3 to 16 tokens (the teacher's maximum length)")
    assert not (tmp_path / "long").exists()
    out = tmp_path / "run"
    assert distill(fixtures, "llada", "mmd", out).exit_code == 0
    r = distill(fixtures, "llada", "mmd", out, "--resume", "--steps", "3", "--length", "10")
    one_error_line(r, f"trains on rows of {LENGTH} tokens; resume it without --length or with --length {LENGTH}")
    r = CliRunner().invoke(app, ["distill", "--domain", "text", "--teacher", str(fixtures["llada"][0]), "--method", "mmd",
                                 "--corpus", str(fixtures["corpus"]), "--out", str(out), "--steps", "3", "--threads", "1",
                                 "--resume"])  # no --length: the run's own
    assert r.exit_code == 0, r.output
    assert json.loads((out / "checkpoints" / "step_0000003" / "provenance.json").read_text())["row_length"] == LENGTH


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llada", "dream"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_fsdp_on_two_gloo_ranks_distils_a_student_that_samples(fixtures, tmp_path, kind, method):
    """``--shard fsdp`` over 2 torchrun ranks (gloo, CPU): the run completes and its student samples."""
    from test_distributed import torchrun

    out = tmp_path / "run"
    torchrun("distill", "--domain", "text", "--teacher", fixtures[kind][0], "--method", method, "--corpus", fixtures["corpus"],
             "--out", out, "--steps", 2, "--threads", 1, "--length", LENGTH, "--shard", "fsdp", "--device", "cpu",
             *METHODS[method])
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(out), "--nfe", "2", "--num-samples", "2",
                                 "--threads", "1"])
    assert r.exit_code == 0, r.output
