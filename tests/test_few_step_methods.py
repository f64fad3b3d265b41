"""SDTT and MMD step functions on real adapters: protein (variable length, padding) and text shapes."""

import pytest
import torch

from didi_seq.backbone import DiT, DiTConfig
from didi_seq.distill.mmd import MMDConfig, mmd_step, resolve_alpha
from didi_seq.distill.sdtt import SDTTConfig, round_delta, sdtt_step
from didi_seq.distributed import RowNoise
from didi_seq.errors import DidiError
from didi_seq.process import LogLinearSchedule
from didi_seq.teacher import NativeTeacher, TeacherSpec


def protein_teacher(layers=2):
    """A tiny DiT over the real ESM alphabet, with padding hidden from attention (as the protein domain's teacher)."""
    from didi_seq_protein.alphabet import ProteinTokenizer

    tok = ProteinTokenizer()
    torch.manual_seed(0)
    model = DiT(DiTConfig(vocab_size=tok.vocab_size, length=24, hidden=32, layers=layers, heads=2, cond_dim=16,
                          pad_id=tok.pad_id))
    torch.nn.init.normal_(model.output_layer.linear.weight, std=0.5)
    for b in model.blocks:  # zero-initialised gates would make every block the identity (no context)
        torch.nn.init.normal_(b.adaLN_modulation.bias, std=0.5)
    spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=24, never_emit=list(tok.never_emit),
                       never_mask=list(tok.never_mask), pad_id=tok.pad_id)
    return NativeTeacher(model, spec, LogLinearSchedule(), {"id": "tiny-protein"}, bf16=False), tok


def protein_rows(tok, lengths=(5, 12, 20, 9), width=22):
    g = torch.Generator().manual_seed(3)
    rows = torch.full((len(lengths), width), tok.pad_id)
    for i, n in enumerate(lengths):
        res = torch.tensor(tok.residue_ids)[torch.randint(len(tok.residue_ids), (n,), generator=g)]
        rows[i, 0], rows[i, 1:n + 1], rows[i, n + 1] = tok.bos_id, res, tok.eos_id
    return rows


def grads_stay_finite_and_reach(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("method", ["sdtt", "mmd"])
def test_step_on_padded_protein_rows(method):
    teacher, tok = protein_teacher()
    x0 = protein_rows(tok)
    maskable = teacher.spec.maskable(x0)
    student = teacher.student_copy()
    student_fn, teacher_fn = teacher.denoiser(student, bf16=False), teacher.denoiser(teacher.model, bf16=False)
    gen = torch.Generator().manual_seed(0)
    noise = RowNoise(gen, len(x0))
    if method == "sdtt":
        cfg = SDTTConfig()
        loss, metrics = sdtt_step(teacher_fn, student_fn, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg,
                                  round_delta(3, cfg.start_nfe), gen, noise)
        assert loss.item() == pytest.approx(0.0, abs=1e-5)  # student = teacher: the target is its own prediction…
        delta = 0.25  # …unless the teacher's steps reveal context the student's one step did not see
        loss, metrics = sdtt_step(teacher_fn, student_fn, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg,
                                  delta, gen, noise)
        assert loss.item() > 0
    else:
        cfg = MMDConfig(kl_coef=0.1)
        features = teacher.trunk_features(cfg.feature_block, bf16=False)
        alpha = resolve_alpha(cfg.alpha, features, x0, maskable)
        assert 0 < alpha < float("inf")
        loss, metrics = mmd_step(student_fn, features, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg, alpha,
                                 gen, noise, teacher=teacher_fn)
        assert {"reward", "advantage_abs", "entropy", "fill_entropy", "fill_rep1", "kl"} <= set(metrics)
        assert metrics["kl"].item() == pytest.approx(0.0, abs=1e-5)
    assert all(torch.isfinite(v) for v in metrics.values())
    loss.backward()
    assert grads_stay_finite_and_reach(student)


def test_padding_and_specials_never_change():
    """MMD fills and SDTT targets only touch maskable positions: <cls>, <eos>, <pad> stay as they are."""
    from didi_seq.distill.mmd import draw_fills

    teacher, tok = protein_teacher()
    x0 = protein_rows(tok)
    maskable = teacher.spec.maskable(x0)
    fn = teacher.denoiser(teacher.model, bf16=False)
    lp = fn(x0, maskable, torch.ones(len(x0)))
    fills = draw_fills(lp, x0, maskable, 2, 2, torch.Generator().manual_seed(0))
    frozen = ~maskable
    assert bool((fills[:, :, :, :][frozen[:, None, None].expand_as(fills)] ==
                 x0[:, None, None].expand_as(fills)[frozen[:, None, None].expand_as(fills)]).all())
    assert bool(torch.isin(fills[maskable[:, None, None].expand_as(fills)], torch.tensor(tok.residue_ids)).all())


def test_feature_block_beyond_the_trunk_is_one_clear_error():
    teacher, _ = protein_teacher(layers=1)
    with pytest.raises(DidiError, match="at least 2 blocks; tiny-protein has 1"):
        teacher.trunk_features(1)
    assert teacher.trunk_features(0)(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 32)
