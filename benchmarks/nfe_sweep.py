"""Gen PPL and entropy of one checkpoint across NFE: the harness's standard sweep.

For every NFE the checkpoint draws ``--samples`` sequences split over ``--seeds`` (the
default 258 = 3 × 86), with the ancestral sampler (fp64 draws, exact per-sequence cache);
the samples are written as the CLI writes them and scored by ``didi_seq.evaluation.harness`` with
the chosen judge (default: the offline SmolLM2-135M). Reported per NFE: Gen PPL and
entropy as mean ± std over seeds, wall-clock s/sample, batched network calls and
sequence evaluations per sample. Real validation text is scored the same way once as the
reference line. Prints a Markdown table, writes JSON + Markdown + a PNG plot.

Sample files and per-NFE records are kept in --work (one file per NFE and seed), so an
interrupted sweep continues where it stopped when rerun with the same arguments.

    python benchmarks/nfe_sweep.py --checkpoint teacher --nfe 8 16 32 64 128 256 1024
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
from didi_seq.evaluation.plots import plot_gen_ppl_vs_nfe
from didi_seq.io.samples import read_jsonl, write_jsonl
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.generate import generate, load_model, ready_sampler, sampler_config


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="text")
    ap.add_argument("--checkpoint", default="teacher", help="'teacher', 'student', a path or a hub id")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 1024])
    ap.add_argument("--samples", type=int, default=258, help="samples per NFE, split evenly over the seeds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--judge", default=None, help="judge name/path (default: the harness's offline default)")
    ap.add_argument("--reference-samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/nfe_sweep"), help="sample files and per-NFE records")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nfe_sweep"), help="output prefix (.json/.md/.png)")
    ap.add_argument("--label", default=None, help="series label in the table and plot (default: the checkpoint id)")
    ap.add_argument("--sampler", default="ancestral", help="a registered sampler (see `didi-seq plugins`)")
    ap.add_argument("--guidance", type=float, nargs=2, default=[0.2, 1.0], metavar=("START", "END"), help="rgas tilting scale h")
    ap.add_argument("--candidates", type=int, default=4, help="rgas re-ranking candidates M")
    ap.add_argument("--rerank-ratio", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=1.0, help="divides the x0 prediction's logits at every step")
    return ap.parse_args(argv)


def config_for(args, domain: str, nfe: int):
    rgas = {"guidance_start": args.guidance[0], "guidance_end": args.guidance[1], "rerank_ratio": args.rerank_ratio,
            "candidates": args.candidates} if args.sampler == "rgas" else {}
    return sampler_config(args.sampler, domain, nfe=nfe, temperature=args.temperature, **rgas)


def samples_for(model, sampler, nfe: int, seed: int, n: int, args, path: Path) -> list[dict]:
    if path.exists():
        return read_jsonl(path)
    records = generate(model, config_for(args, model.domain.name, nfe), sampler=sampler, num_samples=n, seed=seed,
                       batch_size=args.batch_size).records
    write_jsonl(path, records)
    return records


def row_of(nfe: int, rec: dict) -> dict:
    g, h, cost = rec["metrics"]["gen_ppl"], rec["metrics"]["entropy"], rec["sampling"]
    return {"nfe": nfe, "gen_ppl": g["mean"], "gen_ppl_std": g["std"], "gen_ppl_pooled": g["pooled"],
            "gen_ppl_ci": [g["ci"]["low"], g["ci"]["high"]] if g.get("ci") else None,
            "entropy": h["mean"], "entropy_std": h["std"], "samples": rec["num_samples"], "seeds": rec["seeds"],
            "s_per_sample": cost["s_per_sample"], "network_calls_per_sample": cost["network_calls_per_sample"],
            "sequence_evaluations_per_sample": cost["sequence_evaluations_per_sample"],
            "discriminator_calls_per_sample": cost.get("discriminator_calls_per_sample", 0.0)}


def markdown(rows: list[dict], reference: dict, header: str) -> str:
    lines = [header, "",
             "| NFE | Gen PPL (mean ± std over seeds) | pooled [95 % bootstrap CI] | entropy (nats) | samples × seeds | s/sample "
             "| network calls/sample | sequence evals/sample |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ci = f" [{r['gen_ppl_ci'][0]:.1f}, {r['gen_ppl_ci'][1]:.1f}]" if r.get("gen_ppl_ci") else ""
        lines.append(f"| {r['nfe']} | {r['gen_ppl']:.1f} ± {r['gen_ppl_std'] or 0:.1f} | {r['gen_ppl_pooled']:.1f}{ci} "
                     f"| {r['entropy']:.3f} ± {r['entropy_std'] or 0:.3f} "
                     f"| {r['samples'] // len(r['seeds'])} × {len(r['seeds'])} | {r['s_per_sample']:.3f} "
                     f"| {r['network_calls_per_sample']:.2f} | {r['sequence_evaluations_per_sample']:.1f} |")
    lines.append(f"| real validation text ({reference['num_blocks']} blocks) | {reference['gen_ppl']:.1f} | | {reference['entropy']:.3f} "
                 "| | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dom = get_domain(args.domain)
    model = load_model(dom, args.checkpoint)
    adapter, tokenizer = model.adapter, model.tokenizer
    ckpt_id = adapter.provenance.id or "checkpoint"
    sampler = ready_sampler(model, args.sampler, config_for(args, dom.name, 1))  # auxiliary networks load once
    work = args.work / ckpt_id.replace("/", "_")
    if args.sampler == "rgas":
        work = work.with_name(work.name + f"-rgas-h{args.guidance[0]:g}-{args.guidance[1]:g}-m{args.candidates}-r{args.rerank_ratio:g}")
    if args.temperature != 1.0:
        work = work.with_name(work.name + f"-T{args.temperature:g}")
    work.mkdir(parents=True, exist_ok=True)
    per_seed = -(-args.samples // len(args.seeds))
    opts = {"judge_batch_size": 8}

    ref_file = work / "reference.json"
    if ref_file.exists():
        ref_rec = json.loads(ref_file.read_text())
    else:
        refs, ref_info = reference_records(dom, tokenizer, adapter.spec.max_length, args.reference_samples)
        ref_rec = evaluate(dom, refs, judge=args.judge, reference_samples=0, tokenizer=tokenizer, options=opts)
        ref_rec["reference_data"] = ref_info
        write_result(ref_file, ref_rec)
    reference = {"gen_ppl": ref_rec["metrics"]["gen_ppl"]["pooled"], "entropy": ref_rec["metrics"]["entropy"]["pooled"],
                 "num_blocks": ref_rec["num_samples"], **ref_rec["reference_data"], "judge": ref_rec["scorers"]["gen_ppl"]["judge"]}
    print(f"reference: Gen PPL {reference['gen_ppl']:.2f}, entropy {reference['entropy']:.3f}", flush=True)

    rows, records = [], []
    for nfe in sorted(args.nfe):
        rec_file = work / f"nfe{nfe}_record.json"
        if rec_file.exists():
            rec = json.loads(rec_file.read_text())
        else:
            samples = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                samples += samples_for(model, sampler, nfe, seed, per_seed, args, work / f"nfe{nfe}_seed{seed}.jsonl")
                print(f"  NFE {nfe} seed {seed}: sampled in {time.perf_counter() - t0:.0f} s", flush=True)
            rec = evaluate(dom, samples, judge=args.judge, reference_samples=0, tokenizer=tokenizer, options=opts)
            write_result(rec_file, rec)
        rows.append(row_of(nfe, rec))
        records.append(rec)
        r = rows[-1]
        print(f"NFE {nfe}: Gen PPL {r['gen_ppl']:.1f} ± {r['gen_ppl_std'] or 0:.1f}, entropy {r['entropy']:.3f}, "
              f"{r['s_per_sample']:.3f} s/sample, {r['sequence_evaluations_per_sample']:.1f} sequence evals/sample", flush=True)

    label = args.label or ckpt_id
    judge = reference["judge"]
    how = ("ancestral sampler, exact cache" if args.sampler != "rgas"
           else f"RGAS (h {args.guidance[0]:g}→{args.guidance[1]:g}, M {args.candidates})")
    how += f", temperature {args.temperature:g}" if args.temperature != 1.0 else ""
    header = (f"NFE sweep of `{label}` ({args.domain}), {how}, fp64 draws, batch {args.batch_size}, "
              f"{args.threads} CPU thread(s); judge {judge['id']} (revision {str(judge['revision'])[:19]}), "
              f"didi-seq {__version__}")
    table = markdown(rows, reference, header)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "nfe_sweep", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "label": label,
           "checkpoint": ckpt_id, "checkpoint_sha256": adapter.provenance.model_sha256, "rows": rows,
           "reference": reference, "temperature": args.temperature, "threads": args.threads, "batch_size": args.batch_size,
           "machine": platform.platform(),
           "torch": torch.__version__, "didi_seq_version": __version__, "records": records}
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(table)
    if len(rows) > 1:  # one NFE is a table row, not a "vs NFE" plot
        plot_gen_ppl_vs_nfe({label: rows}, args.out.with_suffix(".png"), reference,
                            title=f"{label}: Gen PPL and entropy vs NFE ({judge['id'].split(' ')[0].split('/')[-1]} judge)")
    print(f"wrote {args.out}.json/.md" + (".png" if len(rows) > 1 else ""), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
