"""Core support for variable-length rows: padding is invisible to the DiT and outside every loss."""

import torch

from didi_seq.distill.objective import rewards
from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.process import LogLinearSchedule, corrupt, framed_prior
from didi_seq.models.teacher import TeacherSpec
from didi_seq.training.pretrain import nelbo_loss

MASK, BOS, EOS, PAD = 9, 0, 2, 1


def dit(pad_id):
    torch.manual_seed(0)
    model = DiT(DiTConfig(vocab_size=10, length=16, hidden=32, layers=2, heads=2, cond_dim=16, pad_id=pad_id)).eval()
    torch.nn.init.normal_(model.output_layer.linear.weight, std=0.5)
    for b in model.blocks:
        torch.nn.init.normal_(b.adaLN_modulation.bias, std=0.5)
    return model


def test_padding_keys_are_invisible():
    model = dit(PAD)
    short = torch.tensor([[BOS, 5, 6, MASK, EOS]])
    padded = torch.cat([short, torch.full((1, 6), PAD)], 1)
    with torch.no_grad():
        assert torch.allclose(model(padded)[:, :5], model(short), atol=1e-5)
        no_mask = dit(None)  # packed domains keep the unmasked path: the padding is then seen
        assert not torch.allclose(no_mask(padded)[:, :5], no_mask(short), atol=1e-5)
    assert model.key_mask(short) is None  # no padding in the batch: plain attention


def test_frozen_ids_are_never_masked_and_not_counted():
    spec = TeacherSpec(vocab_size=10, mask_id=MASK, max_length=8, never_mask=[BOS, EOS], pad_id=PAD)
    x0 = torch.tensor([[BOS, 4, 5, 6, EOS, PAD, PAD, PAD], [BOS, 4, 5, 6, 7, 8, 4, EOS]])
    xt = corrupt(x0, torch.ones(2), LogLinearSchedule(eps=0.0), MASK, maskable=spec.maskable(x0))
    assert torch.equal(xt == MASK, spec.maskable(x0))  # at t=1 exactly the residues are masked
    _, count = nelbo_loss(dit(PAD), x0, torch.full((2,), 0.5), LogLinearSchedule(), MASK, torch.Generator(), False, spec)
    assert count == 3 + 6
    assert TeacherSpec(vocab_size=10, mask_id=MASK, max_length=8).maskable(x0) is None  # text: everything maskable


def test_rewards_ignore_positions_that_are_not_masked():
    logits = torch.tensor([[2.0, -50.0, 2.0], [2.0, 2.0, 2.0]])
    masked = torch.tensor([[True, False, True], [True, True, True]])
    r = rewards(logits, masked)
    assert torch.allclose(r[0], r[1])


def test_framed_prior_rejects_lengths_that_do_not_fit():
    import pytest

    with pytest.raises(ValueError):
        framed_prior([5], MASK, BOS, EOS, PAD, width=6)


def test_padded_training_batches_have_similar_lengths():
    from didi_seq.domain.data import draw_batch, length_order

    lengths = torch.randperm(100, generator=torch.Generator().manual_seed(0)) + 1
    rows = torch.stack([torch.cat([torch.full((int(n),), 5), torch.full((101 - int(n),), PAD)]) for n in lengths])
    order = length_order(rows, PAD)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        idx = draw_batch(100, 4, gen, order, window=2)
        picked = lengths[idx]
        assert len(set(idx.tolist())) == 4 and int(picked.max() - picked.min()) < 8
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(draw_batch(100, 4, g1), torch.randint(100, (4,), generator=g2))  # packed rows: unchanged
