"""The learning signals a trainer logs (training/signals.py), against hand computations."""

import torch

from didi_seq.training.signals import grad_momentum_cos, initial_weights, learning_signals, relative_drift


def two_steps(grads):
    """A two-tensor model after one AdamW step with gradients grads[0], then grads[1] set (not yet applied)."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.999), weight_decay=0.0)
    start = initial_weights(model)
    for k, g in enumerate(grads):
        for p, gp in zip(model.parameters(), g, strict=True):
            p.grad = gp.clone()
        if k < len(grads) - 1:
            opt.step()
    return model, opt, start


def test_cosine_is_against_the_momentum_of_earlier_steps():
    g0 = [torch.tensor([[1.0, 0, 0], [0, 2, 0]]), torch.tensor([1.0, -1.0])]
    g1 = [torch.tensor([[0.0, 1, 0], [0, 2, 1]]), torch.tensor([2.0, 0.0])]
    model, opt, start = two_steps([g0, g1])
    m = torch.cat([(0.1 * g).flatten() for g in g0])  # Adam's first moment after one step: (1 − β1)·g0
    g = torch.cat([x.flatten() for x in g1])
    expected = float(g @ m / (g.norm() * m.norm()))
    assert abs(grad_momentum_cos(list(model.parameters()), opt) - expected) < 1e-6
    same, opt2, _ = two_steps([g0, g0])
    assert abs(grad_momentum_cos(list(same.parameters()), opt2) - 1.0) < 1e-6
    flipped, opt3, _ = two_steps([g0, [-x for x in g0]])
    assert abs(grad_momentum_cos(list(flipped.parameters()), opt3) + 1.0) < 1e-6


def test_no_cosine_before_the_first_step():
    model, opt, start = two_steps([[torch.ones(2, 3), torch.ones(2)]])
    assert grad_momentum_cos(list(model.parameters()), opt) is None
    assert set(learning_signals(model, opt, start)) == {"drift"}


def test_drift_is_relative_to_the_starting_weights():
    model = torch.nn.Linear(3, 2)
    start = initial_weights(model)
    assert relative_drift(model, start) == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # θ = 1.5 θ0 → ‖θ − θ0‖ / ‖θ0‖ = 0.5
    assert abs(relative_drift(model, start) - 0.5) < 1e-6
