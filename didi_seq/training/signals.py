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

from .distributed import Ranks
from .sharding import global_sum


@torch.no_grad()
def grad_momentum_cos(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                      ranks: Ranks = Ranks()) -> float | None:
    """cos(g_t, m_{t−1}) over every parameter with a gradient, called before ``optimizer.step()``:
    the gradient about to be applied against Adam's running mean of the earlier ones (None on the
    first step, when there is no mean yet). Sharded parameters' sums are added over ``ranks``."""
    dot, g2, m2 = [], [], []
    for p in params:
        m = optimizer.state.get(p, {}).get("exp_avg")
        if p.grad is None or m is None:
            continue
        g = p.grad.float()
        dot.append((g * m.float()).sum())
        g2.append(g.square().sum())
        m2.append(m.float().square().sum())
    dot, g2, m2 = (global_sum(x, ranks) for x in (dot, g2, m2))
    if g2 == 0.0 or m2 == 0.0:
        return None
    return dot / (g2 * m2) ** 0.5


@torch.no_grad()
def relative_drift(model: torch.nn.Module, start: dict[str, torch.Tensor], ranks: Ranks = Ranks()) -> float:
    """‖θ − θ₀‖ / ‖θ₀‖ over the parameters named in ``start`` (the weights the run began from)."""
    diff, norm = [], []
    for name, p in model.named_parameters():
        if name in start:
            p0 = start[name].to(p.device, torch.float32)
            diff.append((p.float() - p0).square().sum())
            norm.append(p0.square().sum())
    diff, norm = global_sum(diff, ranks), global_sum(norm, ranks)
    return (diff / norm) ** 0.5 if norm else 0.0


def initial_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached fp32 copy of the trainable parameters, the origin ``relative_drift`` measures from."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def learning_signals(model: torch.nn.Module, optimizer: torch.optim.Optimizer, start: dict[str, torch.Tensor],
                     ranks: Ranks = Ranks()) -> dict:
    """The two logged numbers, before ``optimizer.step()``; a missing cosine (first step) is left out.
    Every rank must call this under --shard fsdp (the sums of sharded parameters are a collective)."""
    cos = grad_momentum_cos([p for p in model.parameters() if p.grad is not None], optimizer, ranks)
    return {"drift": relative_drift(model, start, ranks), **({} if cos is None else {"grad_momentum_cos": cos})}
