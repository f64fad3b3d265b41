"""Read third-party PyTorch pickles (Lightning ``.ckpt``) without arbitrary unpickling.

Always ``torch.load(weights_only=True)``: tensors and plain containers are rebuilt by
torch's restricted unpickler. A Lightning file also carries metadata objects that
didi-seq never uses: the Hydra/OmegaConf config, a pickled tokenizer, numpy RNG state.
Those classes are allow-listed *by name* and mapped onto :class:`Placeholder`, an inert
stand-in that only keeps the (already safely unpickled) data it is given, so no foreign
constructor or ``__setstate__`` ever runs; :func:`plain` turns a Hydra config kept that
way back into dicts and values. Only the module prefixes in ``METADATA_MODULES`` are
allowed; any other global makes the load fail with one message naming it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

# Modules whose objects are metadata in Lightning checkpoints of MDLM/DUO/SDTT/DiDi:
# the Hydra config (omegaconf), the tokenizer saved with save_hyperparameters()
# (transformers, tokenizers), RNG states (numpy), and the pickle helpers they use
# (OmegaConf pickles reference builtins.dict, typing.Any and collections.defaultdict).
METADATA_MODULES = (
    "omegaconf.", "transformers.", "tokenizers.", "numpy.", "copyreg._reconstructor", "typing.Any",
    "builtins.dict", "builtins.set", "builtins.frozenset", "builtins.object", "collections.defaultdict",
    "pathlib.", "_codecs.encode",
)


class Placeholder:
    """Inert stand-in for an allow-listed metadata object: stores its arguments and state
    as data, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return "<metadata placeholder>"


def plain(obj, depth: int = 0):
    """Plain dicts/lists/values from placeholders of OmegaConf containers and nodes
    (``_content`` of a DictConfig/ListConfig, ``_val`` of a value node); None otherwise."""
    if depth > 50:
        return None
    if isinstance(obj, Placeholder):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return plain(state["_content"], depth + 1)
        return plain(state["_val"], depth + 1) if "_val" in state else None
    if isinstance(obj, dict):
        return {k: plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, depth + 1) for v in obj]
    return obj


def _is_metadata(name: str) -> bool:
    return any(name == m or name.startswith(m) for m in METADATA_MODULES)


def load_pickle_checkpoint(path: Path) -> dict:
    """A ``torch.save`` file as a dict of tensors and containers; metadata objects become
    :class:`Placeholder`. Raises ``CheckpointError`` naming any disallowed global."""
    import torch
    from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

    path = Path(path)
    try:
        needed = get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:  # noqa: BLE001 - torch raises many types for non-zip / truncated files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'})") from None
    refused = sorted(n for n in needed if not _is_metadata(n))
    if refused:
        shown = ", ".join(refused[:4]) + (f" (+{len(refused) - 4} more)" if len(refused) > 4 else "")
        raise CheckpointError(f"{path} would need to unpickle {shown}; didi-seq loads pickles only with "
                              f"torch.load(weights_only=True) and will not run that code (re-save the state_dict "
                              f"with safetensors, or as plain tensors)")
    try:
        with safe_globals([(Placeholder, n) for n in needed]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path} could not be read safely ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj
