"""Hook implementations that register the protein domain (found via the didi_seq entry point)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from didi_seq.domain import Domain
from didi_seq.hookspecs import hookimpl

ASSETS = Path(__file__).resolve().parent / "assets"

# Embedded teacher recipe (assets/README.md): ≤ 512 residues + <cls>/<eos>, 4.08 M parameters (16.3 MB).
PRESETS = {
    "protein-tiny": {"model": {"length": 34, "hidden": 32, "layers": 1, "heads": 2, "cond_dim": 16},
                     "batch_size": 4, "steps": 4, "warmup": 1, "eval_every": 2, "ckpt_every": 2, "eval_batches": 1},
    "protein-small": {"model": {"length": 514, "hidden": 256, "layers": 4, "heads": 4, "cond_dim": 128},
                      "batch_size": 16, "steps": 3000, "warmup": 100, "eval_every": 250, "ckpt_every": 100,
                      "eval_batches": 8},
}


def _load_tokenizer(path: Path | None):
    from .alphabet import ProteinTokenizer

    return ProteinTokenizer.from_file(path)


def _load_corpus(src: str | None):
    from .corpus import load_protein_corpus

    return load_protein_corpus(src)


def _pad_rows(dataset, tokenizer, length: int):
    from didi_seq.data import pad_rows

    return pad_rows(dataset, tokenizer, length)


def _length_model(spec: str | None, max_residues: int):
    from .corpus import corpus_lengths
    from .lengths import parse_lengths

    return parse_lengths(spec, max_residues, corpus_lengths)


def _write_fasta(jsonl: Path, records: list[dict]) -> list[Path]:
    """``x.jsonl`` → ``x.fasta`` with one record per sample, named by index and seed."""
    from .fasta import write_fasta

    path = Path(jsonl).with_suffix(".fasta")
    write_fasta(path, [(f"sample{r['index']}_seed{r['seed']}", r["sequence"]) for r in records],
                [f"length={len(r['sequence'])} nfe={r['nfe']} sampler={r['sampler']} checkpoint={r['checkpoint']}"
                 for r in records])
    return [path]


@dataclass
class ProteinDomain(Domain):
    def sample_record(self, ids: list[int], tokenizer) -> dict:
        seq = tokenizer.decode(ids)
        return {"sequence": seq, "length": len(seq)}


PROTEIN = ProteinDomain(
    name="protein",
    description="proteins (ESM alphabet, variable length); embedded corpus: 12.9k UniProt sequences (mmseqs2-examples)",
    load_tokenizer=_load_tokenizer,
    load_corpus=_load_corpus,
    embedded_teacher=ASSETS / "teacher",
    embedded_student=ASSETS / "student",
    default_length=514,
    default_preset="protein-small",
    sample_field="sequence",
    make_rows=_pad_rows,
    length_model=_length_model,
    presets=PRESETS,
    write_samples=_write_fasta,
)


@hookimpl
def register_domains(register):
    register(PROTEIN)


@hookimpl
def register_teacher_formats(register):
    from .dplm import DPLM_FORMAT, ESM_STUDENT_FORMAT

    register(DPLM_FORMAT)
    register(ESM_STUDENT_FORMAT)


@hookimpl
def register_scorers(register):
    from .scorers import OFFLINE, PLDDT

    for scorer in (*OFFLINE, *PLDDT):
        register(scorer)


@hookimpl
def register_samplers(register):
    from .native_sampler import NativeSampler

    register(NativeSampler())
