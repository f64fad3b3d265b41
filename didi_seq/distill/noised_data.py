"""Noised real rows: the only input SDTT and representation-space MMD train on (no student rollout).

t is antithetic on [t_min, 1] over the global batch (MDLM's stratified draw) and each row
keeps its own t; masks come from the same row-wise uniforms on every world size
(distributed.py), and positions outside ``maskable`` (BOS/EOS, padding) stay clean.
"""

from __future__ import annotations

import torch

from ..models.process import LogLinearSchedule, corrupt, stratified_times
from ..training.distributed import RowNoise


def noised_rows(x0: torch.Tensor, maskable: torch.Tensor | None, schedule: LogLinearSchedule, mask_id: int,
                generator: torch.Generator, noise: RowNoise, t_min: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [N], z_t [N, L]) for this rank's rows ``x0`` of a global batch of ``noise.global_rows``."""
    t = stratified_times(noise.global_rows, generator, t_min)[noise.rows].to(x0.device)
    z = corrupt(x0, t, schedule, mask_id, maskable=maskable, u=noise.uniform(x0.shape[1], dtype=torch.float32))
    return t, z
