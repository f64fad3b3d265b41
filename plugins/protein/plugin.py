"""Hook implementations that register the protein domain (found via the didi_seq entry point)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from didi_seq import Domain, hookimpl

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
    from didi_seq.domain.data import pad_rows

    return pad_rows(dataset, tokenizer, length)


def _length_model(spec: str | None, max_residues: int):
    from didi_seq.domain.lengths import parse_lengths

    from .corpus import corpus_lengths
    from .fasta import read_fasta

    return parse_lengths(spec, max_residues, corpus_lengths, lambda path: [len(s) for _, s in read_fasta(path)])


def _fasta_bytes(records: list[dict]) -> bytes:
    """The samples as FASTA, one record per sample, named by index and seed (written beside the JSONL)."""
    from .fasta import fasta_bytes

    return fasta_bytes([(f"sample{r['index']}_seed{r['seed']}", r["sequence"]) for r in records],
                       [f"length={len(r['sequence'])} nfe={r['nfe']} sampler={r['sampler']} checkpoint={r['checkpoint']}"
                        for r in records])


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
    sample_files={".fasta": _fasta_bytes},
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
