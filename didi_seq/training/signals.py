"""Whether a trainer can learn at all, read off its optimiser step (two numbers per step, logged).

A distillation run whose Gen PPL never moves has one of two causes, and the logs must say which:
the student does not move (``drift``: its distance from the weights it started from, relative to
their norm), or it moves at random (``grad_momentum_cos``: the cosine between this step's gradient
and Adam's first moment, the average of earlier gradients). Consistent gradients give a cosine
near 1; a policy gradient drowned in sampling noise gives ≈ 0, whatever its norm. Both are
computed from tensors the step already holds, without another forward pass.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def grad_momentum_cos(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> float | None:
    """cos(g_t, m_{t−1}) over every parameter with a gradient, called before ``optimizer.step()``:
    the gradient about to be applied against Adam's running mean of the earlier ones (None on the
    first step, when there is no mean yet)."""
    dot = g2 = m2 = 0.0
    for p in params:
        m = optimizer.state.get(p, {}).get("exp_avg")
        if p.grad is None or m is None:
            continue
        g = p.grad.float()
        dot += float((g * m.float()).sum())
        g2 += float(g.square().sum())
        m2 += float(m.float().square().sum())
    if g2 == 0.0 or m2 == 0.0:
        return None
    return dot / (g2 * m2) ** 0.5


@torch.no_grad()
def relative_drift(model: torch.nn.Module, start: dict[str, torch.Tensor]) -> float:
    """‖θ − θ₀‖ / ‖θ₀‖ over the parameters named in ``start`` (the weights the run began from)."""
    diff = norm = 0.0
    for name, p in model.named_parameters():
        if name in start:
            p0 = start[name].to(p.device, torch.float32)
            diff += float((p.float() - p0).square().sum())
            norm += float(p0.square().sum())
    return (diff / norm) ** 0.5 if norm else 0.0


def initial_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached fp32 copy of the trainable parameters, the origin ``relative_drift`` measures from."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def learning_signals(model: torch.nn.Module, optimizer: torch.optim.Optimizer, start: dict[str, torch.Tensor]) -> dict:
    """The two logged numbers, before ``optimizer.step()``; a missing cosine (first step) is left out."""
    cos = grad_momentum_cos([p for p in model.parameters() if p.grad is not None], optimizer)
    return {"drift": relative_drift(model, start), **({} if cos is None else {"grad_momentum_cos": cos})}
