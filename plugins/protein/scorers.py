"""Protein scorers for ``didi-seq evaluate --domain protein``.

The offline metrics (``metrics.py``) compare samples with the held-out split of the embedded
corpus; their names say what they measure and none is called pLDDT. ``plddt`` and
``plddt_above_70`` run only when ``--plddt-model`` names an ESMFold (they share one fold
per sequence) and also record a per-length-bucket table in the result's scorer info.
"""

from __future__ import annotations

import functools

from didi_seq import DidiError, EvalContext, Scorer
from didi_seq.evaluation.metrics import mean_std

from . import metrics as m

BUCKET = 100  # residues per length bucket (DPLM reports lengths 100, 200, …)


@functools.cache
def heldout() -> tuple[str, ...]:
    from .corpus import validation_sequences

    return tuple(validation_sequences())


def _sequences(records: list[dict], ctx: EvalContext) -> list[dict]:
    ctx.tick(len(records))
    return [{"sequence": r["sequence"]} for r in records]


def _seqs(stats: list[dict]) -> list[str]:
    return [s["sequence"] for s in stats]


def _mean(key):
    return lambda stats: mean_std([s[key] for s in stats])[0]


def _per_sequence(fn, key):
    def per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
        ctx.tick(len(records))
        return [{key: fn(r["sequence"])} for r in records]

    return per_sample


def _heldout_info(records, ctx):
    ctx.info["reference"] = f"held-out split of the embedded corpus ({len(heldout())} sequences)"
    return _sequences(records, ctx)


OFFLINE = [
    Scorer("aa_composition_js", "Jensen-Shannon divergence of amino-acid frequencies vs held-out real sequences (not pLDDT)",
           _heldout_info, lambda st: m.composition_js(_seqs(st), list(heldout()), 1), ("protein",), "nats"),
    Scorer("dipeptide_composition_js", "Jensen-Shannon divergence of dipeptide frequencies vs held-out real sequences "
           "(not pLDDT)", _heldout_info, lambda st: m.composition_js(_seqs(st), list(heldout()), 2), ("protein",), "nats"),
    Scorer("longest_homopolymer", "longest single-residue run per sequence, mean over samples",
           _per_sequence(m.longest_homopolymer, "run"), _mean("run"), ("protein",), "residues"),
    Scorer("max_residue_fraction", "largest single-residue share per sequence, mean over samples",
           _per_sequence(m.max_residue_fraction, "frac"), _mean("frac"), ("protein",)),
    Scorer("uniqueness", "distinct sequences / sequences", _sequences, lambda st: m.uniqueness(_seqs(st)), ("protein",)),
    Scorer("mean_pairwise_identity", "mean LCS identity over pairs of samples (identical residues in the best gapped "
           "alignment / longer length)", _sequences, lambda st: m.mean_pairwise_identity(_seqs(st)), ("protein",)),
    Scorer("length_w1", "Wasserstein-1 distance between sample lengths and held-out lengths",
           _heldout_info, lambda st: m.wasserstein_1([len(s) for s in _seqs(st)], [len(s) for s in heldout()]),
           ("protein",), "residues"),
]


_FOLDED: dict[tuple[str, str], object] = {}  # (model, sequence) → Folded: both pLDDT scorers fold once


def _plddt_per_sample(records: list[dict], ctx: EvalContext, table: bool = True) -> list[dict]:
    from .folding import fold_all, load_folder

    spec = ctx.options.get("plddt_model")
    if not spec:
        raise DidiError("pLDDT needs a folding model: pass --plddt-model DIR (an ESMFold directory) or fair-esm")
    folder = load_folder(spec, str(ctx.options.get("device") or "cpu"))
    seqs = [r["sequence"] for r in records]
    if any(not s for s in seqs):
        raise DidiError("a sample has an empty sequence; pLDDT is undefined for it")
    todo = [s for s in dict.fromkeys(seqs) if (spec, s) not in _FOLDED]
    first_call = not ctx.info.get("record_sets_folded")  # the harness scores the samples first, then the reference
    ctx.info["record_sets_folded"] = ctx.info.get("record_sets_folded", 0) + 1
    pdb_dir = ctx.options.get("pdb_dir") if first_call and table else None  # once, by the plddt scorer
    if pdb_dir:  # PDB files for every sample, so fold them all (no cache)
        names = [f"sample{r.get('index', i)}_seed{r.get('seed')}_len{len(r['sequence'])}" for i, r in enumerate(records)]
        for s, f in zip(seqs, fold_all(folder, seqs, int(ctx.options.get("fold_batch_size") or 4), pdb_dir, names,
                                       advance=ctx.tick), strict=True):
            _FOLDED[(spec, s)] = f
    else:
        for s, f in zip(todo, fold_all(folder, todo, int(ctx.options.get("fold_batch_size") or 4), advance=ctx.tick),
                        strict=True):
            _FOLDED[(spec, s)] = f
        ctx.tick(len(seqs) - len(todo))
    stats = [{"plddt": _FOLDED[(spec, s)].plddt, "plddt_ca": _FOLDED[(spec, s)].plddt_ca, "length": len(s)} for s in seqs]
    ctx.info.update(folder.info)
    if table:
        ctx.info["by_length" if first_call else "reference_by_length"] = by_length(stats)
    return stats


def by_length(stats: list[dict]) -> dict:
    """Mean pLDDT (0–100) and the fraction above 70 per length bucket of ``BUCKET`` residues."""
    table: dict[str, dict] = {}
    for lo in sorted({(s["length"] - 1) // BUCKET * BUCKET for s in stats}):
        part = [s for s in stats if lo < s["length"] <= lo + BUCKET]
        table[f"{lo + 1}-{lo + BUCKET}"] = {"n": len(part), "mean_plddt": mean_std([s["plddt"] for s in part])[0],
                                            "fraction_above_70": plddt_fraction_above_70(part)}
    return table


def plddt_fraction_above_70(stats: list[dict]) -> float:
    return sum(s["plddt"] > 70 for s in stats) / len(stats)


def report_by_length(info: dict) -> list[str]:
    """The per-length-bucket tables of the samples and of the reference, one line each."""
    lines = []
    for key in ("by_length", "reference_by_length"):
        if info.get(key):
            cells = "; ".join(f"{bucket}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()) for bucket, row in info[key].items())
            lines.append(f"plddt {key.replace('_', ' ')}: {cells}")
    return lines


PLDDT = [
    Scorer("plddt", "ESMFold mean pLDDT per sequence (all-atom mean, 0-100), mean over samples", _plddt_per_sample,
           _mean("plddt"), ("protein",), "0-100", requires=("plddt_model",), report=report_by_length),
    Scorer("plddt_above_70", "fraction of samples whose ESMFold mean pLDDT exceeds 70",
           lambda records, ctx: _plddt_per_sample(records, ctx, table=False),
           plddt_fraction_above_70, ("protein",), requires=("plddt_model",)),
]
