"""Read third-party PyTorch pickles (Lightning ``.ckpt``) without arbitrary unpickling.

Always ``torch.load(weights_only=True)``: tensors and plain containers are rebuilt by
torch's restricted unpickler. A Lightning file also carries metadata objects that
didi-seq never uses: the Hydra/OmegaConf config, a pickled tokenizer, numpy RNG state.
Those classes are allow-listed *by name* and mapped onto :class:`Placeholder`, an inert
stand-in that accepts and drops its arguments, so no foreign constructor or
``__setstate__`` ever runs. Only the module prefixes in ``METADATA_MODULES`` are
allowed; any other global makes the load fail with one message naming it.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

# Modules whose objects are metadata in Lightning checkpoints of MDLM/DUO/SDTT/DiDi:
# the Hydra config (omegaconf), the tokenizer saved with save_hyperparameters()
# (transformers, tokenizers), RNG states (numpy), and the pickle helpers they use.
METADATA_MODULES = (
    "omegaconf.", "transformers.", "tokenizers.", "numpy.", "copyreg._reconstructor", "typing.Any",
    "builtins.set", "builtins.frozenset", "builtins.object", "collections.defaultdict", "pathlib.",
    "_codecs.encode",
)


class Placeholder:
    """Inert stand-in for an allow-listed metadata object: keeps nothing, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def __repr__(self) -> str:
        return "<metadata placeholder>"


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
