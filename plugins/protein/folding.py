"""pLDDT from ESMFold, behind one scorer, with two backends.

* ``hf``: transformers' ``EsmForProteinFolding`` from a local directory (config.json +
  weights, e.g. a copy of ``facebook/esmfold_v1``) or a hub id already in the local cache.
  Works on CPU and offline. Its pLDDT is on a **0–1** scale and it returns no mean: both
  are fixed here (×100, all-atom mean).
* ``fair-esm``: ``esm.pretrained.esmfold_v1()`` (weights from the torch hub cache; pass
  ``fair-esm:DIR`` to use DIR as the hub directory). It needs openfold, which is not
  installable on Python 3.11 / CPU machines, and its config dataclasses fail to import on
  Python ≥ 3.11 — ``fair_esm_unavailable()`` says which, and the scorer reports it.

Convention (fair-esm's ``mean_plddt``, what DPLM's tables report): the per-sequence mean
over all existing heavy atoms (atom37 mask), 0–100; padding of a batch is excluded by the
sequence's own length. ``plddt_ca`` (the Cα channel, AlphaFold-style) is kept beside it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from didi_seq import DidiError
from didi_seq.io.hub import download_command

CA = 1  # atom37 index of Cα


@dataclass
class Folded:
    plddt: float  # all-atom mean, 0–100
    plddt_ca: float  # Cα mean, 0–100
    pdb: str | None = None


def fair_esm_unavailable() -> str | None:
    """None when fair-esm's ESMFold imports, else the reason it does not."""
    try:
        import esm.esmfold.v1.esmfold  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError (openfold) or ValueError (py3.11 dataclasses)
        return f"fair-esm's ESMFold does not import here ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    return None


def summarise(plddt: torch.Tensor, exists: torch.Tensor, lengths: list[int], scale: float) -> list[tuple[float, float]]:
    """(all-atom mean, Cα mean) per sequence on 0–100, from [B, L, 37] values and atom masks;
    positions past a sequence's length (batch padding) are excluded whatever the model put there."""
    out = []
    for i, n in enumerate(lengths):
        p, m = plddt[i, :n].double() * scale, exists[i, :n].double()
        out.append((float((p * m).sum() / m.sum().clamp_min(1)), float(p[:, CA].mean())))
    return out


class HFEsmFold:
    name = "hf"

    def __init__(self, path: Path, label: str, device: str = "cpu"):
        from .alphabet import require_transformers

        require_transformers("pLDDT with ESMFold (EsmForProteinFolding)")
        from transformers import EsmForProteinFolding
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.model = EsmForProteinFolding.from_pretrained(str(path), dtype=torch.float32).eval()
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DidiError(f"cannot load ESMFold from {path}: {first}") from None
        self.model.esm.float()  # the released config keeps the LM in fp16, slow on CPU
        self.model.to(device)  # infer() moves its inputs to the model's device
        # axial attention in chunks: O(L) memory there (facebookresearch/esm README, ESMFold; docs/machine-notes.md §5)
        self.model.trunk.set_chunk_size(64)
        self.info = {"backend": "transformers EsmForProteinFolding", "model": label, "path": str(path),
                     "scale": "model 0-1, reported x100", "mean": "all-atom (atom37 mask), as fair-esm mean_plddt",
                     "chunk_size": 64, "recycles": int(self.model.config.esmfold_config.trunk.max_recycles)}

    @torch.no_grad()
    def fold(self, seqs: list[str], pdb: bool = False) -> list[Folded]:
        out = self.model.infer(seqs)
        stats = summarise(out["plddt"], out["atom37_atom_exists"], [len(s) for s in seqs], 100.0)
        pdbs = [None] * len(seqs)
        if pdb:
            scaled = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
            scaled["plddt"] = out["plddt"] * 100.0  # B-factors on the usual 0–100 scale
            pdbs = self.model.output_to_pdb(scaled)
        return [Folded(a, c, p) for (a, c), p in zip(stats, pdbs, strict=True)]


class FairEsmFold:
    name = "fair-esm"

    def __init__(self, hub_dir: str | None, device: str = "cpu"):
        reason = fair_esm_unavailable()
        if reason:
            raise DidiError(f"{reason}; use a transformers ESMFold directory instead (--plddt-model DIR holding "
                            "facebook/esmfold_v1's config.json and weights)")
        import esm

        if hub_dir:
            torch.hub.set_dir(hub_dir)
        self.model = esm.pretrained.esmfold_v1().eval()
        self.model.esm.float()
        self.model.to(device)
        self.info = {"backend": "fair-esm esmfold_v1", "model": "esmfold_3B_v1", "hub_dir": torch.hub.get_dir(),
                     "scale": "0-100", "mean": "all-atom (atom37 mask), fair-esm mean_plddt"}

    @torch.no_grad()
    def fold(self, seqs: list[str], pdb: bool = False) -> list[Folded]:
        out = self.model.infer(seqs)
        stats = summarise(out["plddt"], out["atom37_atom_exists"], [len(s) for s in seqs], 1.0)
        pdbs = self.model.output_to_pdb(out) if pdb else [None] * len(seqs)
        return [Folded(a, c, p) for (a, c), p in zip(stats, pdbs, strict=True)]


def _hf_dir(spec: str) -> Path:
    p = Path(spec).expanduser()
    if p.is_dir():
        from didi_seq.io.untrusted import read_json

        try:
            config = read_json(p / "config.json", "config")
        except DidiError:
            raise DidiError(f"--plddt-model {spec}: no readable config.json in that directory") from None
        if not isinstance(config, dict) or not config.get("is_folding_model"):
            raise DidiError(f"--plddt-model {spec}: config.json is not an ESMFold (EsmForProteinFolding) config")
        return p
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(spec, local_files_only=True))
        except Exception:  # noqa: BLE001 - every hub error here means "not cached"
            raise DidiError(f"--plddt-model {spec}: not a local directory and not in the local Hugging Face cache; "
                            f"run `{download_command(spec)}` where there is network") from None
    raise DidiError(f"--plddt-model {spec}: expected an ESMFold directory, a cached hub id (facebook/esmfold_v1), "
                    "or fair-esm[:TORCH_HUB_DIR]")


@functools.cache
def load_folder(spec: str, device: str = "cpu"):
    """A folding backend for ``--plddt-model`` on ``device``: a directory/hub id (transformers) or ``fair-esm[:DIR]``."""
    if spec == "fair-esm" or spec.startswith("fair-esm:"):
        return FairEsmFold(spec.partition(":")[2] or None, device)
    return HFEsmFold(_hf_dir(spec), spec, device)


def fold_all(folder, seqs: list[str], batch_size: int = 4, pdb_dir: Path | None = None, names: list[str] | None = None,
             advance=None) -> list[Folded]:
    """Fold in length-sorted batches (less padding); optionally write ``NAME.pdb`` files atomically."""
    from didi_seq.io.checkpoint import atomic_write_bytes

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    results: list[Folded | None] = [None] * len(seqs)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        for i, r in zip(idx, folder.fold([seqs[i] for i in idx], pdb=pdb_dir is not None), strict=True):
            results[i] = r
            if pdb_dir is not None:
                name = names[i] if names else f"sample_{i}"
                atomic_write_bytes(Path(pdb_dir) / f"{name}_plddt{r.plddt:.1f}.pdb", r.pdb.encode())
        if advance:
            advance(len(idx))
    return results  # type: ignore[return-value]
