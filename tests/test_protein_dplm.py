"""A tiny random EsmForMaskedLM through the DPLM adapter and both samplers."""

import json
import math

import pytest
import torch

from didi_seq.errors import CheckpointError, DidiError
from didi_seq.io.provenance import SourceInfo
from didi_seq.models.loading import load_teacher
from didi_seq.models.process import framed_prior
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, ancestral_sample, sample_batches
from didi_seq_protein.alphabet import STANDARD, ProteinTokenizer
from didi_seq_protein.native_sampler import dplm_sample, over_repeated
from protein_models import save_tiny_dplm

TOK = ProteinTokenizer()
RESIDUE_IDS = torch.tensor([TOK.index[a] for a in STANDARD])


@pytest.fixture(scope="module")
def dplm_dir(tmp_path_factory):
    return save_tiny_dplm(tmp_path_factory.mktemp("dplm") / "dplm_tiny")


@pytest.fixture(scope="module")
def teacher(dplm_dir):
    adapter, tok = load_teacher(str(dplm_dir), get_domain("protein"))
    return adapter


def mixed_batch():
    return framed_prior([3, 9, 5, 12], TOK.mask_id, TOK.bos_id, TOK.eos_id, TOK.pad_id)


def check_samples(x0, x):
    """No specials inside, no mask left, BOS/EOS/pads exactly where they were."""
    frozen = x0 != TOK.mask_id
    assert torch.equal(x[frozen], x0[frozen])
    assert bool(torch.isin(x[~frozen], RESIDUE_IDS).all())
    assert not bool((x == TOK.mask_id).any())


def test_adapter_spec_and_provenance(teacher, dplm_dir):
    s = teacher.spec
    assert (s.vocab_size, s.mask_id, s.pad_id, s.max_length) == (33, 32, 1, 1024)
    assert s.never_mask == [0, 2] and set(TOK.never_emit) == set(s.never_emit)
    p = teacher.provenance
    assert isinstance(p, SourceInfo) and p.domain == "protein" and p.extra["token_dropout"] is True
    assert p.id.startswith("dplm_tiny@") and p.path == str(dplm_dir) and p.format == "esm-masked-lm"
    assert list(p.to_dict()) == ["name", "id", "model_sha256", "path", "format", "weights_file", "domain",
                                 "token_dropout", "revision", "architectures"]


def test_esm_student_loader_gives_a_source_info(tmp_path, teacher):
    """A didi-seq checkpoint of an ESM network (a student distilled from DPLM) loads through the esm-student
    format with its provenance.json, then path, id, domain, format and tokenizer file."""
    from didi_seq.io.checkpoint import load_checkpoint, save_checkpoint

    state = {k: v.clone() for k, v in teacher.model.state_dict().items()}  # untie the shared embedding / head
    config = {"domain": "protein", "kind": "student", "architecture": "esm", "model": teacher.model.config.to_dict(),
              "spec": teacher.spec.to_dict(), "schedule": {"name": "loglinear", "eps": 1e-3}}
    saved = tmp_path / "esm"
    save_checkpoint(saved, state, config, {"name": "esm-student", "kind": "student", "domain": "protein",
                                           "saved_from": teacher.provenance.id}, TOK.to_json())
    adapter, _ = load_teacher(str(saved), get_domain("protein"))
    ckpt = load_checkpoint(saved)
    want = {**json.loads((saved / "provenance.json").read_text()), "path": str(ckpt.path), "id": ckpt.id,
            "domain": "protein", "format": "didi-seq esm", "tokenizer_file": str(ckpt.path / "tokenizer.json")}
    p = adapter.provenance
    assert isinstance(p, SourceInfo) and list(p.to_dict().items()) == list(want.items())
    assert p.format == "didi-seq esm" and p.model_sha256 == want["model_sha256"] and p.extra["saved_from"].startswith("dplm_tiny@")


def test_token_dropout_is_kept(teacher):
    """ESM's mask-ratio rescaling changes the logits of a heavily masked input, as in the checkpoint."""
    x = mixed_batch()
    with_dropout = teacher.logits(x)
    teacher.model.esm.embeddings.token_dropout = False
    try:
        without = teacher.logits(x)
    finally:
        teacher.model.esm.embeddings.token_dropout = True
    assert with_dropout.shape == (4, 14, 33) and with_dropout.dtype == torch.float32
    assert not torch.allclose(with_dropout, without)


def test_padding_does_not_change_logits(teacher):
    x = mixed_batch()
    alone = teacher.logits(x[:1, :5])
    assert torch.allclose(teacher.logits(x)[0, :5], alone[0], atol=1e-5)


def test_ancestral_sampler_mixed_lengths_and_seed(teacher):
    x0 = mixed_batch()
    a = ancestral_sample(teacher, 4, SamplerConfig(nfe=6), torch.Generator().manual_seed(3), x_init=x0)
    b = sample_batches(teacher, 4, SamplerConfig(nfe=6), seed=3, batch_size=4, x_init=x0)
    check_samples(x0, a.tokens)
    assert torch.equal(a.tokens, b.tokens)


def test_native_sampler_invariants_schedule_and_seed(teacher):
    x0 = mixed_batch()
    seen = []

    class Recorder:
        spec, device = teacher.spec, teacher.device

        def logits(self, x):
            seen.append(x.clone())
            return teacher.logits(x)

    res = dplm_sample(Recorder(), x0, 8, torch.Generator().manual_seed(0), suppress=TOK.never_emit, repeat_threshold=None)
    check_samples(x0, res.tokens)
    assert res.network_calls == 8 and res.nfe == 8
    n_res = (x0 == TOK.mask_id).sum(-1)
    for t, x in enumerate(seen[1:], start=1):  # the input of step t+1 is the state after step t
        assert (x == TOK.mask_id).sum(-1).tolist() == torch.floor((1 - t / 8) * n_res.double()).long().tolist()
    again = dplm_sample(teacher, x0, 8, torch.Generator().manual_seed(0), suppress=TOK.never_emit, repeat_threshold=None)
    assert torch.equal(res.tokens, again.tokens)


def test_repeat_guard_fires_on_a_forced_repeat(teacher):
    x0 = framed_prior([12, 12], TOK.mask_id, TOK.bos_id, TOK.eos_id, TOK.pad_id)
    a_id = TOK.index["A"]

    class Repeater:
        spec, device = teacher.spec, teacher.device

        def logits(self, x):
            out = teacher.logits(x)
            out[..., a_id] += 100.0  # a forced repeat: "A" everywhere
            return out

    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    off = dplm_sample(Repeater(), x0, 4, gen(), suppress=TOK.never_emit, repeat_threshold=None)
    on = dplm_sample(Repeater(), x0, 4, gen(), suppress=TOK.never_emit, repeat_threshold=0.25)
    assert off.network_calls == 4 and on.network_calls > 4  # the guard's extra calls are counted
    assert bool((off.tokens[x0 == TOK.mask_id] == a_id).all())
    check_samples(x0, on.tokens)
    residues = x0 == TOK.mask_id
    assert over_repeated(off.tokens, residues, 33, 0.25).any()


def test_strict_loading_and_domain_check(tmp_path, dplm_dir):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((dplm_dir / "config.json").read_text())
    state = load_file(str(dplm_dir / "model.safetensors"))
    state.pop(next(k for k in state if "encoder.layer.0.attention.self.query.weight" in k))
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_teacher(str(broken), get_domain("protein"))
    with pytest.raises(DidiError, match="--domain protein"):
        load_teacher(str(dplm_dir), get_domain("text"))
    cfg = json.loads((dplm_dir / "config.json").read_text())
    assert cfg["model_type"] == "esm"  # what the format's detection keys on


def test_batches_are_cut_to_their_own_width(teacher):
    """A batch of short rows does not run at the width of the longest row, and samples keep the full width."""
    x0 = framed_prior([3, 3, 12, 12], TOK.mask_id, TOK.bos_id, TOK.eos_id, TOK.pad_id)
    widths = []

    class Recorder:
        spec, schedule, device = teacher.spec, teacher.schedule, teacher.device

        def masked_log_probs(self, x, t, positions):
            widths.append(x.shape[1])
            return teacher.masked_log_probs(x, t, positions)

    res = sample_batches(Recorder(), 4, SamplerConfig(nfe=3), seed=0, batch_size=2, x_init=x0)
    assert set(widths) == {5, 14} and res.tokens.shape == (4, 14)
    check_samples(x0, res.tokens)


def test_dplm_layout_without_contact_head_and_with_old_buffers(tmp_path, dplm_dir):
    """DPLM saves no contact head; older transformers saved position_ids: both load, the logits are the same."""
    from safetensors.torch import load_file, save_file

    like_dplm = tmp_path / "dplm_like"
    like_dplm.mkdir()
    for name in ("config.json", "vocab.txt"):
        (like_dplm / name).write_text((dplm_dir / name).read_text())
    state = {k: v for k, v in load_file(str(dplm_dir / "model.safetensors")).items() if "contact_head" not in k}
    state["esm.embeddings.position_ids"] = torch.arange(1026)[None]
    save_file(state, str(like_dplm / "model.safetensors"))
    adapter, _ = load_teacher(str(like_dplm), get_domain("protein"))
    reference, _ = load_teacher(str(dplm_dir), get_domain("protein"))
    x = mixed_batch()
    assert torch.allclose(adapter.logits(x), reference.logits(x))


def test_native_sampler_remasks_the_least_confident_positions():
    """DPLM re-masks the lowest-scored positions: on a toy whose logits are sharp at some positions and flat
    at the others, the state after step 1 of 2 must hold <mask> exactly at the flat (least confident) ones."""
    from didi_seq.models.teacher import TeacherSpec

    cls_id, eos_id, mask_id, n_res, rows = 5, 6, 7, 8, 64
    sharp = torch.tensor([False, True, True, False, True, False, False, True])  # 4 of 8 residues: cutoff ⌊(1 − 1/2)·8⌋
    seen = []

    class Toy:
        spec = TeacherSpec(vocab_size=8, mask_id=mask_id, max_length=n_res + 2, never_mask=[cls_id, eos_id])
        device = torch.device("cpu")

        def logits(self, x):
            seen.append(x.clone())
            out = torch.zeros(*x.shape, 8)
            out[:, 1:-1][:, sharp, 2] = 30.0  # one token certain at the sharp positions, 5 residues uniform elsewhere
            return out

    x0 = framed_prior([n_res] * rows, mask_id, cls_id, eos_id, pad_id=0, width=n_res + 2)
    res = dplm_sample(Toy(), x0, 2, torch.Generator().manual_seed(0), suppress=[cls_id, eos_id], repeat_threshold=None)
    after_step1 = seen[1][:, 1:-1] == mask_id
    assert torch.equal(after_step1, (~sharp).expand(rows, -1))
    assert (res.tokens[:, 1:-1][:, sharp] == 2).all() and not (res.tokens == mask_id).any()


def test_native_sampler_per_step_mask_marginals_are_exact():
    """With the same logits everywhere the positions are exchangeable, so after step t of T every residue is
    masked with probability exactly ⌊(1 − t/T)·N⌋ / N (DPLM's linear schedule), whatever it held before."""
    from didi_seq.models.teacher import TeacherSpec

    cls_id, eos_id, mask_id, n_res, rows, nfe = 5, 6, 7, 8, 2000, 4
    seen = []

    class Flat:
        spec = TeacherSpec(vocab_size=8, mask_id=mask_id, max_length=n_res + 2, never_mask=[cls_id, eos_id])
        device = torch.device("cpu")

        def logits(self, x):
            seen.append(x.clone())
            return torch.zeros(*x.shape, 8)

    x0 = framed_prior([n_res] * rows, mask_id, cls_id, eos_id, pad_id=0, width=n_res + 2)
    dplm_sample(Flat(), x0, nfe, torch.Generator().manual_seed(0), suppress=[cls_id, eos_id], repeat_threshold=None)
    for t, x in enumerate(seen[1:], start=1):  # the input of step t+1 is the state after step t
        p = (n_res * (nfe - t) // nfe) / n_res
        freq = (x[:, 1:-1] == mask_id).double().mean(0)
        assert (freq - p).abs().max().item() < 4.5 * math.sqrt(p * (1 - p) / rows), (t, freq.tolist(), p)


def test_save_pretrained_writes_a_dplm_teacher_with_tied_weights(dplm_dir, tmp_path):
    """An ESM masked LM ties its output head to its embedding; save_pretrained still writes it, and the
    saved copy loads (as an ESM checkpoint) with the same logits."""
    import torch

    from didi_seq import MaskedDiffusionModel

    model = MaskedDiffusionModel.from_pretrained(str(dplm_dir), domain="protein")
    saved = MaskedDiffusionModel.from_pretrained(str(model.save_pretrained(tmp_path / "copy")), domain="protein")
    x = mixed_batch()
    t = torch.full((x.shape[0],), 0.5)
    a, b = model._model.adapter, saved._model.adapter
    assert torch.allclose(a.log_probs(x, t), b.log_probs(x, t))
