"""Data-parallel training over ranks (torchrun + torch.distributed, gloo on CPU).

The convention that keeps every world size on the same trajectory as one process with
the same global batch:

- **Same random numbers.** Every rank draws the random numbers of the *whole* global
  batch from the same seeded stream and keeps its own rows (``RowNoise``, ``Ranks.rows``).
  Drawing is cheap next to the networks, and a row sees the same numbers whichever rank
  computes it, so 1, 2 or 8 ranks produce the same samples, masks and times.
- **Shares of global means.** Each loss term is this rank's share of the global mean
  (local sum / global count, ``Ranks.mean``); gradients are then *summed* over ranks
  (``Ranks.sum_gradients``), and the sum of the shares is exactly the one-process mean.
  Values that need every row (grouped reward normalisation) are all-gathered.
- **One writer.** Rank 0 alone writes checkpoints and logs. The training state it saves
  is global (weights, optimiser, RNG streams are identical on every rank), so a run
  resumes on any world size.

Why not torch's DistributedDataParallel wrapper: the loops call the DiT's
``hidden_states``/``head`` directly (logits only at masked positions) and train two
networks per step, which bypasses the wrapper's forward hook; one flat all-reduce per
network after ``backward`` is explicit and as cheap at these sizes.

``--shard fsdp`` keeps these conventions and cuts the networks over the ranks instead of
copying them (sharding.py).

On GPUs each rank drives ``cuda:LOCAL_RANK`` and the group runs over NCCL; on CPUs over
gloo (devices.py). Random numbers are drawn on the host either way, so the convention above
holds across devices too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..devices import backend_for, host_rand
from ..errors import DidiError


def local_mean(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) mean of ``x``; 0 (still attached to the graph) when there is nothing to average."""
    if weight is None:
        return x.mean() if x.numel() else x.sum() * 0
    return (x * weight).sum() / weight.sum().clamp_min(1e-12)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; the default is a single process (no communication)."""

    rank: int = 0
    world_size: int = 1
    sharded: bool = False  # --shard fsdp: the networks are cut over the ranks (sharding.py)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def rows(self, total: int, what: str) -> slice:
        """This rank's contiguous block of ``total`` global rows."""
        if total % self.world_size:
            raise DidiError(f"{what} {total} does not split over {self.world_size} ranks; "
                            f"use a multiple of {self.world_size} (it is the global batch)")
        n = total // self.world_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def mean(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's share of the (weighted) mean over every rank's elements of ``x``."""
        if not self.active:
            return local_mean(x, weight)
        if weight is None:
            local, count = x.sum(), torch.tensor(float(x.numel()), device=x.device)
        else:
            local, count = (x * weight).sum(), weight.detach().sum().float()
        return local / self.sum(count).clamp_min(1e-12)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks of a (detached) tensor, returned on every rank."""
        t = t.detach().clone()
        if self.active:
            torch.distributed.all_reduce(t)
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenation in rank order of every rank's (equal-shaped, detached) ``t``."""
        if not self.active:
            return t.detach()
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, t.detach().contiguous())
        return torch.cat(parts)

    def sum_gradients(self, params) -> None:
        """Replace every gradient by its sum over ranks (one flat all-reduce). Gradients of sharded
        parameters are left alone: FSDP's reduce-scatter already summed them (sharding.py)."""
        if not self.active:
            return
        from torch.distributed.tensor import DTensor

        grads = [p.grad for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


class RowNoise:
    """Uniform noise for a block of rows, drawn for the whole global batch.

    ``uniform(*trailing)`` returns ``[rows, *trailing]`` on ``device``: exactly what
    ``torch.rand((global_rows, *trailing))`` would give these rows in one process (drawn on
    the host, devices.py).
    """

    def __init__(self, generator: torch.Generator, global_rows: int, rows: slice | None = None,
                 device: torch.device | str = "cpu"):
        self.generator, self.global_rows, self.device = generator, global_rows, device
        self.rows = rows if rows is not None else slice(0, global_rows)

    def uniform(self, *trailing: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return host_rand((self.global_rows, *trailing), self.generator, dtype=dtype)[self.rows].to(self.device)


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK): which GPU it drives."""
    return env_int("LOCAL_RANK", 0)


def env_int(name: str, default: int) -> int:
    """A non-negative integer from torchrun's environment; anything else is one error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise DidiError(f"environment variable {name}={raw!r} is not a non-negative integer (torchrun sets it; "
                        f"unset it to run a single process)")
    return value


def init_from_env(device: torch.device = torch.device("cpu"), sharded: bool = False) -> Ranks:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR/PORT), if any,
    over NCCL when this rank drives a GPU and gloo on the CPU. ``sharded``: --shard fsdp
    (``sharding.check_shard`` refused it on a single process before)."""
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group(backend_for(device), **({"device_id": device} if device.type == "cuda" else {}))
        except (RuntimeError, ValueError) as e:
            raise DidiError(f"cannot join the torchrun process group: {str(e).splitlines()[0]}") from None
    return Ranks(dist.get_rank(), dist.get_world_size(), sharded)


def shutdown(ranks: Ranks) -> None:
    """Leave the process group after a clean run. The ranks first meet at a barrier: a rank that tore
    down gloo while its peer was still finishing (rank 0 writes the last checkpoint) made a rank abort
    ("terminate called without an active exception"; two CI runs in a row failed so)."""
    if ranks.active and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
