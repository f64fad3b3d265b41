"""Protein: teacher (ancestral and DPLM-native samplers) vs DiDi-Instruct student across NFE.

For each series and NFE the model draws ``--samples`` proteins split over ``--seeds``; the
lengths come from the same length model for every series (default: the corpus histogram;
``--lengths 100,200,300`` for DPLM's protocol), so all series generate the same lengths.
Reported per row: the offline metrics of ``evaluate --domain protein`` (composition JS
divergences, homopolymer runs, max residue share, uniqueness, pairwise identity, length
W1 — none of them pLDDT), wall-clock s/sample and real network calls per sample (the
native sampler's repetition guard adds calls beyond its NFE). With ``--plddt-model`` the
ESMFold mean pLDDT (0–100) and fraction above 70 are added. The held-out split is scored
the same way once as the reference row. Prints a Markdown table, writes JSON + Markdown.

Samples and per-row records are kept in --work, so an interrupted run continues.

    python benchmarks/protein_nfe.py --teacher teacher --student student --nfe 8 16 32 --native-nfe 8 16 32 500
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from didi_seq import __version__
from didi_seq.evaluation.harness import evaluate, reference_records, write_result
from didi_seq.io.samples import read_jsonl, write_jsonl
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.generate import generate, load_model, sampler_config

COLUMNS = [("aa_composition_js", "AA JS", 3), ("dipeptide_composition_js", "dipep JS", 3),
           ("longest_homopolymer", "max run", 1), ("max_residue_fraction", "max res frac", 3), ("uniqueness", "unique", 2),
           ("mean_pairwise_identity", "pair ident", 3), ("length_w1", "len W1", 1), ("entropy", "entropy", 3),
           ("plddt", "pLDDT", 1), ("plddt_above_70", "pLDDT>70", 2)]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="teacher", help="'teacher' (embedded), a checkpoint path, or a DPLM hub id/dir")
    ap.add_argument("--student", default="student", help="'student' (embedded) or a distilled checkpoint; 'none' to skip")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32], help="NFE of the ancestral series (teacher, student)")
    ap.add_argument("--native-nfe", type=int, nargs="*", default=[8, 16, 32], help="iterations of the teacher's native sampler")
    ap.add_argument("--samples", type=int, default=64, help="samples per row, split evenly over the seeds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--lengths", default=None, help="length model spec (default: the corpus histogram)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=1.0, help="divides the x0 prediction's logits at every step")
    ap.add_argument("--plddt-model", default=None, help="ESMFold for pLDDT columns (directory, cached hub id, fair-esm)")
    ap.add_argument("--reference-samples", type=int, default=64, help="held-out sequences in the reference row (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/protein_nfe"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/protein_nfe"), help="output prefix (.json/.md)")
    return ap.parse_args(argv)


def draw(model, sampler: str, nfe: int, seed: int, n: int, args) -> list[dict]:
    cfg = sampler_config(sampler, model.domain.name, nfe=nfe, temperature=args.temperature)
    return generate(model, cfg, sampler=sampler, num_samples=n, seed=seed, lengths=args.lengths,
                    batch_size=args.batch_size).records


def row_of(series: str, nfe: int, rec: dict) -> dict:
    cost = rec["sampling"]
    row = {"series": series, "nfe": nfe, "samples": rec["num_samples"], "seeds": rec["seeds"],
           "s_per_sample": cost["s_per_sample"], "network_calls_per_sample": cost["network_calls_per_sample"],
           "sequence_evaluations_per_sample": cost["sequence_evaluations_per_sample"]}
    for key, _, _ in COLUMNS:
        if key in rec["metrics"]:
            row[key], row[key + "_std"] = rec["metrics"][key]["mean"], rec["metrics"][key]["std"]
    return row


def markdown(rows: list[dict], header: str) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = [header, "", "| series | NFE | " + " | ".join(c[1] for c in cols) + " | s/sample | net calls/sample |",
             "|---|---:|" + "---:|" * (len(cols) + 2)]
    for r in rows:
        cells = [f"{r[k]:.{d}f}" if isinstance(r.get(k), float | int) else "-" for k, _, d in cols]
        cost = [f"{r['s_per_sample']:.3f}", f"{r['network_calls_per_sample']:.2f}"] if "s_per_sample" in r else ["", ""]
        lines.append(f"| {r['series']} | {r.get('nfe', '')} | " + " | ".join(cells) + " | " + " | ".join(cost) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dom = get_domain("protein")
    models = {"teacher": load_model(dom, args.teacher)}
    if args.student != "none":
        models["student"] = load_model(dom, args.student)
    plan = [("teacher", "ancestral", n) for n in args.nfe] + [("teacher", "native", n) for n in args.native_nfe or []]
    plan += [("student", "ancestral", n) for n in args.nfe if "student" in models]
    opts = {"plddt_model": args.plddt_model}
    per_seed = -(-args.samples // len(args.seeds))
    args.work.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for who, sampler, nfe in plan:
        adapter = models[who].adapter
        tag = f"{who}-{(adapter.provenance.id or who).replace('/', '_')}-{sampler}-nfe{nfe}"
        tag += f"-T{args.temperature:g}" if args.temperature != 1.0 else ""
        rec_file = args.work / f"{tag}_record.json"
        if rec_file.exists():
            rec = json.loads(rec_file.read_text())
        else:
            samples = []
            for seed in args.seeds:
                path = args.work / f"{tag}_seed{seed}.jsonl"
                if path.exists():
                    part = read_jsonl(path)
                else:
                    t0 = time.perf_counter()
                    part = draw(models[who], sampler, nfe, seed, per_seed, args)
                    write_jsonl(path, part)
                    print(f"  {tag} seed {seed}: sampled in {time.perf_counter() - t0:.1f} s", flush=True)
                samples += part
            rec = evaluate(dom, samples, reference_samples=0, tokenizer=models[who].tokenizer, options=opts)
            write_result(rec_file, rec)
        rows.append(row_of(f"{who} {sampler}", nfe, rec))
        records.append(rec)
        print(markdown(rows[-1:], f"{who} {sampler} NFE {nfe}").splitlines()[-1], flush=True)
    if args.reference_samples > 0:
        tokenizer = models["teacher"].tokenizer
        refs, info = reference_records(dom, tokenizer, dom.default_length, args.reference_samples)
        ref = evaluate(dom, refs, reference_samples=0, tokenizer=tokenizer, options=opts)
        ref_row = {"series": f"held-out real ({info['num_blocks']} sequences)"}
        ref_row.update({k: v["mean"] for k, v in ref["metrics"].items()})
        rows.append(ref_row)
    ids = {who: m.adapter.provenance.id for who, m in models.items()}
    header = (f"Protein NFE benchmark: {', '.join(f'{k} `{v}`' for k, v in ids.items())}; {args.samples} samples per row "
              f"over seeds {args.seeds}; lengths {args.lengths or 'corpus histogram'}; temperature {args.temperature:g}; "
              f"batch {args.batch_size}, "
              f"{args.threads} CPU thread(s); pLDDT: {args.plddt_model or 'not computed (no --plddt-model)'}; "
              f"didi-seq {__version__}. Composition metrics are JS divergences to the held-out split, not pLDDT.")
    table = markdown(rows, header)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "protein_nfe", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "checkpoints": ids,
           "rows": rows, "temperature": args.temperature, "threads": args.threads, "batch_size": args.batch_size,
           "machine": platform.platform(),
           "torch": torch.__version__, "didi_seq_version": __version__, "records": records}
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(table)
    print(f"wrote {args.out}.json/.md", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
