"""Hugging Face safetensors weights, one file or sharded, checked before a single weight is read.

Layouts (transformers' ``save_pretrained``): ``model.safetensors``, or ``model.safetensors.index.json``
whose ``weight_map`` names, for every tensor, the shard that holds it. The headers alone (names,
shapes, dtypes) are compared with what the config implies; only then is the network allocated
and each shard read once, its tensors assigned in place (no second copy, no random init).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io.checkpoint import check_state_matches, weights_sha256
from ..io.hub import download_command
from ..io.untrusted import read_json, safetensors_shapes

INDEX, SINGLE = "model.safetensors.index.json", "model.safetensors"
FLOATS = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
TORCH_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}  # config.json's torch_dtype spelling


@dataclass(frozen=True)
class Tensor:
    """A tensor as its shard's header describes it."""

    shape: tuple[int, ...]
    dtype: str  # safetensors spelling: BF16, F32, ...
    file: Path


def hub_location(directory: Path) -> tuple[str, str | None]:
    """(owner/name, commit) of a snapshot in the Hugging Face cache (…/models--owner--name/snapshots/<commit>),
    else (the directory's name, None)."""
    parts = Path(directory).absolute().parts
    repo = next(("/".join(p[len("models--"):].split("--", 1)) for p in parts if p.startswith("models--")), None)
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None
    return (repo or Path(directory).name), commit


def require_files(directory: Path, names: list[str]) -> None:
    """Name the files a (partly downloaded) checkpoint lacks, and the command that fetches them."""
    missing = sorted({n for n in names if not (directory / n).is_file()})
    if missing:
        repo, commit = hub_location(directory)
        shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        raise CheckpointError(f"{directory} lacks {shown}; download the complete checkpoint "
                              f"(`{download_command(repo if commit else '<repo>', *missing[:3], revision=commit)}`) and retry")


def shard_names(directory: Path) -> dict[str, str]:
    """Tensor name → file name, from the index (sharded) or the single file's header."""
    if (directory / INDEX).exists():
        index = read_json(directory / INDEX, "weights index", error=CheckpointError)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict) or not wmap or not all(isinstance(v, str) for v in wmap.values()):
            raise CheckpointError(f"{directory / INDEX} has no weight_map of tensor names to shard files")
        bad = [f for f in set(wmap.values()) if Path(f).name != f or f in (".", "..")]
        if bad:  # a shard must lie in the checkpoint directory itself
            raise CheckpointError(f"{directory / INDEX} names shard files outside its directory: {sorted(bad)[:3]}")
        require_files(directory, list(wmap.values()))
        return dict(wmap)
    require_files(directory, [SINGLE])
    return {name: SINGLE for name in safetensors_shapes(directory / SINGLE, CheckpointError)}


def read_headers(directory: Path) -> dict[str, Tensor]:
    """Every tensor's shape, dtype and file, from the headers only (bounded reads)."""
    from safetensors import SafetensorError, safe_open

    names = shard_names(directory)
    found: dict[str, Tensor] = {}
    for file in sorted(set(names.values())):
        path = directory / file
        shapes = safetensors_shapes(path, CheckpointError)
        try:
            with safe_open(str(path), "pt") as f:
                dtypes = {k: f.get_slice(k).get_dtype() for k in shapes}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is truncated or not a safetensors file ({e})") from None
        for name, shape in shapes.items():
            if name in found:
                raise CheckpointError(f"{directory}: tensor {name} is stored twice ({found[name].file.name}, {file})")
            found[name] = Tensor(shape, dtypes[name], path)
    listed = [n for n, f in names.items() if n not in found or found[n].file.name != f]
    if listed:
        raise CheckpointError(f"{directory / INDEX} places {listed[0]} in {names[listed[0]]}, which does not hold it")
    return found


def check_headers(expected: dict[str, tuple[int, ...]], found: dict[str, Tensor], source: str,
                  torch_dtype: str | None = None) -> None:
    """Names and shapes exactly as the config implies, floating dtypes (the declared one, if any)."""
    check_state_matches(expected, found, source)  # reads only .shape, which a header Tensor has
    odd = sorted(k for k, t in found.items() if t.dtype not in FLOATS)
    if odd:
        raise CheckpointError(f"{source}: {odd[0]} is {found[odd[0]].dtype}; weights must be BF16, F16 or F32")
    want = TORCH_DTYPES.get(torch_dtype) if isinstance(torch_dtype, str) else None
    other = sorted(k for k, t in found.items() if want and t.dtype != want)
    if other:
        raise CheckpointError(f"{source}: config.json declares torch_dtype {torch_dtype} but {other[0]} is "
                              f"{found[other[0]].dtype}; the config does not belong to these weights")


def load_assigned(module: torch.nn.Module, found: dict[str, Tensor], internal: dict[str, str]) -> None:
    """Read every shard once and assign its tensors to ``module`` (built on the meta device);
    ``internal`` maps checkpoint names to the module's. Tensors keep their stored dtype."""
    from safetensors import safe_open

    state = {}
    for path in sorted({t.file for t in found.values()}):
        with safe_open(str(path), "pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                state[internal[name]] = f.get_tensor(name)
    module.load_state_dict(state, strict=True, assign=True)


def weights_id(found: dict[str, Tensor]) -> str:
    """sha256 naming the weights: the file's own hash for one file, else the hash of the shards'
    (name, hash) list, so editing any shard changes it. Hashes are of the bytes on disk, never a claim."""
    files = sorted({t.file for t in found.values()})
    if len(files) == 1:
        return weights_sha256(files[0])
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.name}:{weights_sha256(path)}\n".encode())
    return h.hexdigest()
