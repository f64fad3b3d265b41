"""Exponential moving average of a model's parameters (what pretrain and the distillers publish).

MDLM and DiDi-Instruct evaluate the EMA weights, so checkpoints hold the average and the
raw weights live only in the resume state.
"""

from __future__ import annotations

import torch


class EMA:
    """Exponential moving average of parameters, with MDLM's warm-up of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        # every name of a tied parameter (e.g. ESM's shared embedding/output matrix) gets its average,
        # so a saved state never mixes averaged and raw copies of one tensor
        self.shadow = {k: v.detach().clone().float() for k, v in model.named_parameters(remove_duplicate=False)}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters(remove_duplicate=False):
            self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    def load(self, shadow: dict[str, torch.Tensor], updates: int) -> None:
        """Restore a saved average (resume states load on the CPU) onto the device the average lives on."""
        device = next(iter(self.shadow.values())).device
        self.shadow, self.updates = {k: v.to(device) for k, v in shadow.items()}, updates

    def state_for(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with parameters replaced by their averages."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}
