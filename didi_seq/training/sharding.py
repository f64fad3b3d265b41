"""Fully sharded data parallel training (``--shard fsdp``): PyTorch FSDP2 over the torchrun ranks.

Data parallelism (distributed.py) keeps a whole copy of every network on every rank; a teacher
like LLaDA-8B with a student and a discriminator beside it does not fit one device that way.
With ``--shard fsdp`` each network (the trained ones and the frozen teacher) is cut into FSDP2
units, one per transformer block plus the rest (``torch.distributed.fsdp.fully_shard``, per
block, then the root); each rank keeps 1/N of every unit's parameters, gradients and Adam
moments, and gathers a unit's full weights only while it computes.

The random-number and global-mean conventions of distributed.py are unchanged, so a sharded
run follows the one-process trajectory too. Two details keep it so:

- **Gradients are summed, not averaged.** Each rank's loss is its share of the global mean, so
  FSDP's reduce-scatter must sum (``set_gradient_divide_factor(1)``), and with plain ``SUM``
  collectives (gloo has no pre-multiplied sum). ``Ranks.sum_gradients`` leaves such gradients alone.
- **Every rank runs the same network calls.** A unit's gather is a collective: evaluation and
  checkpoints, rank 0's alone under data parallelism, run on every rank here.

The loops call a network's ``hidden_states``/``head``/``trunk``/``cond`` as well as ``forward``
(logits only at masked positions, the MMD feature trunk); these are registered as FSDP forward
methods on the root, and a call nested in another one (``forward`` → ``hidden_states``) runs
plainly inside the outer call's gather.

Checkpoints (``TrainingRun.save``): the resume state's sharded tensors (weights, EMA, Adam
moments) go to ``sharded/`` beside ``training_state.pt`` through ``torch.distributed.checkpoint``
(each rank writes its shards, so a resume may use another world size, or none: ``--shard ddp``
and a single process load them whole); the published ``model.safetensors`` is gathered to rank 0
as usual, so every checkpoint stays a complete student/teacher directory ``sample`` loads.

Limits: the networks are built whole on every rank before they are cut (no meta-device loading),
parameters stay fp32 (bf16 only through autocast, as without sharding), and FSDP needs at
least two ranks (``check_shard``).
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DidiError
from .distributed import Ranks, env_int

SHARD_MODES = ("ddp", "fsdp")
SHARDED_DIR = "sharded"  # torch.distributed.checkpoint files, inside a checkpoint directory
SHARDED_LEAF = "<sharded/>"  # what training_state.pt holds where a tensor lives in sharded/
# methods the loops call on a network besides forward (DiT; LLaDA/Dream's ``project``; a network may offer fewer)
ENTRY_METHODS = ("hidden_states", "head", "trunk", "cond", "project")


def check_shard(mode: str) -> bool:
    """Whether ``--shard`` asks for FSDP; one error for an unknown mode or for FSDP without
    torchrun ranks to shard over. Reads torchrun's WORLD_SIZE only: runs before anything is created."""
    if mode not in SHARD_MODES:
        raise DidiError(f"unknown --shard {mode!r}; expected {' or '.join(SHARD_MODES)}")
    if mode == "fsdp" and env_int("WORLD_SIZE", 1) < 2:
        raise DidiError("--shard fsdp shards the networks over torchrun's ranks, and this is a single process; "
                        "launch it with `torchrun --nproc-per-node N` (N ≥ 2) or drop --shard")
    return mode == "fsdp"


def _mesh(device: torch.device):
    from torch.distributed.device_mesh import init_device_mesh

    key = device.type
    if key not in _MESHES:
        _MESHES[key] = init_device_mesh(key, (torch.distributed.get_world_size(),))
    return _MESHES[key]


_MESHES: dict[str, Any] = {}


def transformer_blocks(module: nn.Module) -> list[nn.Module]:
    """The FSDP units below the root: every member of a plain ``ModuleList`` whose members are all of one
    class and hold parameters (a DiT's ``blocks``, a Hugging Face model's ``layers``; not the lists of
    parametrizations, such as spectral norm's, which are ``ModuleList`` subclasses)."""
    units = []
    for sub in module.modules():
        if type(sub) is nn.ModuleList and len({type(m) for m in sub}) == 1 and any(True for _ in sub.parameters()):
            units.extend(sub)
    return units


def is_sharded(module: nn.Module) -> bool:
    return hasattr(module, "_didi_sharding")


def shard(module: nn.Module, ranks: Ranks) -> nn.Module:
    """Cut ``module`` (already on its device) into FSDP2 units, in place, when ``ranks`` shard; else
    return it unchanged. Call it before an optimiser, an EMA or anything else holds its parameters."""
    if not ranks.sharded:
        return module
    import warnings

    from torch.distributed.fsdp import FSDPModule, fully_shard

    # about writing into a network's output in place (it would skip a gather); the loops never do
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    skeleton = _skeleton(module)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    mesh = _mesh(device)
    for unit in transformer_blocks(module):
        fully_shard(unit, mesh=mesh, reshard_after_forward=True)
    # the root too gives its weights back after each call: a frozen teacher is never resharded otherwise
    fully_shard(module, mesh=mesh, reshard_after_forward=True)
    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.set_force_sum_reduction_for_comms(True)
            unit.set_gradient_divide_factor(1.0)
    _register_entry_methods(module)
    module._didi_sharding = (skeleton, ranks)
    return module


def _register_entry_methods(module: nn.Module) -> None:
    """Make ``ENTRY_METHODS`` gather the root's weights like ``forward``; a call made while another
    entry (or forward) is running goes straight to the method, inside the outer gather."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    depth = [0]

    def enter(*_):
        depth[0] += 1

    def leave(*_):
        depth[0] -= 1

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave, always_call=True)
    for name in ENTRY_METHODS:
        if not inspect.ismethod(getattr(module, name, None)):
            continue
        plain = getattr(module, name)
        register_fsdp_forward_method(module, name)
        gathered = getattr(module, name)

        def entry(*args, _plain=plain, _gathered=gathered, **kwargs):
            if depth[0]:
                return _plain(*args, **kwargs)
            depth[0] += 1
            try:
                return _gathered(*args, **kwargs)
            finally:
                depth[0] -= 1

        object.__setattr__(module, name, entry)


def _skeleton(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with its parameters on the meta device (buffers kept): what
    ``clone_module`` rebuilds a sharded module from (FSDP modules cannot be deep-copied)."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in module.parameters()}
    return copy.deepcopy(module, memo)


def clone_module(module: nn.Module) -> nn.Module:
    """An independent copy of ``module`` with its current weights (an EMA network, SDTT's round teacher);
    of a sharded module, a sharded copy (every rank must call this)."""
    if not is_sharded(module):
        return copy.deepcopy(module)
    skeleton, ranks = module._didi_sharding
    new = copy.deepcopy(skeleton)
    device = next(p.device for p in module.parameters())
    for owner in new.modules():
        for name, p in list(owner._parameters.items()):
            if p is not None:
                owner._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                                       requires_grad=p.requires_grad)
    shard(new.to(device), ranks)
    new.load_state_dict(module.state_dict())
    return new


# -- tensors and states ----------------------------------------------------------------------


def is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensors(tensors: dict[str, torch.Tensor], ranks: Ranks) -> dict[str, torch.Tensor]:
    """Every sharded tensor of ``tensors`` gathered whole (a collective, one tensor at a time), on the
    host; rank 0 keeps the result, the other ranks get ``{}``. Unsharded tensors pass through."""
    out = {}
    for k, v in tensors.items():
        whole = v.full_tensor() if is_dtensor(v) else v
        if ranks.is_main:
            out[k] = whole.detach().cpu()
    return out


def global_sum(parts: list[torch.Tensor], ranks: Ranks) -> float:
    """The sum of per-parameter reductions (``.sum()`` of tensors or DTensors) as one float: a
    sharded part holds this rank's shard only, so those are added over ranks in one all-reduce."""
    whole, sharded, device = 0.0, 0.0, None
    for t in parts:
        if is_dtensor(t):
            sharded, device = sharded + float(t.to_local().sum()), t.device
        else:
            whole += float(t)
    if device is not None and ranks.active:  # on the parameters' device: NCCL reduces GPU tensors only
        sharded = ranks.sum(torch.tensor(sharded, dtype=torch.float64, device=device)).item()
    return whole + sharded


def split_sharded(state: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """``state`` with each sharded tensor replaced by ``SHARDED_LEAF``, and those tensors by their path
    ("student/blocks.0.attn_qkv.weight", "opt_s/state/3/exp_avg"): what ``torch.distributed.checkpoint`` saves."""
    if is_dtensor(state):
        return SHARDED_LEAF, {prefix: state.detach()}
    if isinstance(state, dict):
        kept, found = {}, {}
        for k, v in state.items():
            kept[k], sub = split_sharded(v, f"{prefix}/{k}" if prefix else str(k))
            found.update(sub)
        return kept, found
    if isinstance(state, (list, tuple)):
        parts = [split_sharded(v, f"{prefix}/{i}") for i, v in enumerate(state)]
        found = {k: v for _, sub in parts for k, v in sub.items()}
        return type(state)(p for p, _ in parts), found
    return state, {}


def has_sharded(state: Any) -> bool:
    if isinstance(state, dict):
        return any(has_sharded(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return any(has_sharded(v) for v in state)
    return isinstance(state, str) and state == SHARDED_LEAF


def _fill(state: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    if isinstance(state, dict):
        return {k: _fill(v, tensors, f"{prefix}/{k}" if prefix else str(k)) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_fill(v, tensors, f"{prefix}/{i}") for i, v in enumerate(state))
    if isinstance(state, str) and state == SHARDED_LEAF:
        return tensors[prefix]
    return state


def shards_scratch_name(target: Path) -> str:
    """Where the shards of checkpoint ``target`` are written first: hidden run-directory debris
    (``run_dir.prepare_resume`` removes it) until the checkpoint is published with them inside."""
    return f".{target.name}.tmp-shards-{os.getpid()}"


def write_shards(target: Path, state: dict, ranks: Ranks) -> tuple[dict, Path | None]:
    """Every rank writes its shards of ``state`` into a hidden sibling of checkpoint ``target`` (crash
    debris until ``TrainingRun.save`` moves it inside); returns the rest of the state and that directory."""
    import torch.distributed.checkpoint as dcp

    rest, tensors = split_sharded(state)
    if not tensors:
        return rest, None
    name = [None]
    if ranks.is_main:
        target.parent.mkdir(parents=True, exist_ok=True)
        name[0] = shards_scratch_name(target)
    torch.distributed.broadcast_object_list(name, src=0)
    where = target.parent / name[0]
    dcp.save(tensors, checkpoint_id=str(where))
    return rest, where


def read_shards(state: dict, checkpoint: Path, device: torch.device, ranks: Ranks) -> dict:
    """``state`` (a loaded training_state.pt) with its ``SHARDED_LEAF``s read from ``checkpoint/sharded``:
    as shards of this run's ranks when it shards, else as whole tensors (any world size reads them)."""
    if not has_sharded(state):
        if ranks.sharded:
            raise DidiError(f"{checkpoint} was written without --shard fsdp, and its resume state holds whole "
                            "networks; resume it without --shard (a run may switch from fsdp to ddp, not back)")
        return state
    import warnings

    import torch.distributed.checkpoint as dcp

    where = checkpoint / SHARDED_DIR
    try:
        metadata = dcp.FileSystemReader(str(where)).read_metadata().state_dict_metadata
    except (OSError, ValueError, RuntimeError) as e:
        raise DidiError(f"cannot resume from {where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
            from None
    tensors = {}
    for key, meta in metadata.items():
        size, dtype = tuple(meta.size), meta.properties.dtype
        if ranks.sharded:
            from torch.distributed.tensor import Shard
            from torch.distributed.tensor import empty as dtensor_empty

            tensors[key] = dtensor_empty(size, dtype=dtype, device_mesh=_mesh(device), placements=[Shard(0)])
        else:
            tensors[key] = torch.empty(size, dtype=dtype, device=device)
    with warnings.catch_warnings():  # one process without a group: torch says it assumes so
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(tensors, checkpoint_id=str(where))
    return _fill(state, tensors)
