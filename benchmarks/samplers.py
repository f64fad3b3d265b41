"""Samplers side by side at matched entropy: which sampler makes a model's few steps count most.

A training-free sampler is worth shipping only if it wins at the *same entropy*: a sampler that
lowers entropy buys Gen PPL without being better ("Hacking Generative Perplexity", arXiv
2606.08417; RGAS's T = 1 gain here was exactly that). Every model × NFE × sampler is read at one
target entropy (default teacher@1024's at T = 1, from a ``methods.py`` result) off its temperature
sweep (``frontier.py --bracket``): Gen PPL interpolated between the two straddling grid points, the
nearest point's 95 % bootstrap CI and MAUVE, and the ratio to the same model and NFE sampled
ancestrally.

Each ``--runs SAMPLER=FRONTIER.json`` is a frontier result of one sampler over the same models and
NFEs, made with ``frontier.py --sampler S [--sampler-option K=V] --target-entropy H --bracket`` (the
sampler's options belong to its label, e.g. ``dilated`` or ``ancestral+cosine``). Ancestral rows may come from an
earlier frontier of the same protocol (same seeds, checkpoints and judge: sampling and judging are
deterministic, so its cells are what a re-run gives; check one cell when in doubt).

    python benchmarks/samplers.py --runs ancestral=benchmarks/results/methods_frontier.json \\
        dilated=benchmarks/results/frontier_dilated.json --labels teacher mmd --out benchmarks/results/samplers

Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (Gen PPL at matched entropy against NFE, one line
per model × sampler, teacher@1024 as a dotted line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier  # noqa: E402
from methods import ci, matched_rows  # noqa: E402

from didi_seq import __version__  # noqa: E402
from didi_seq.evaluation.harness import write_result  # noqa: E402
from didi_seq.evaluation.plots import plot_matched_vs_nfe  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, metavar="SAMPLER=FRONTIER.json",
                    help="one frontier result per sampler label; 'ancestral' is the reference of the ratios")
    ap.add_argument("--labels", nargs="+", required=True, help="the frontier curve labels (models) to compare")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--reference", type=Path, default=None,
                    help="a methods.py JSON whose teacher@1024 point is drawn as the target (default: none)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/samplers"))
    return ap.parse_args(argv)


def compare(runs: list[tuple[str, dict]], labels: list[str], nfes: list[int]) -> list[dict]:
    """Rows model × NFE × sampler at the runs' common target entropy, each with its ratio to ancestral.
    ``runs``: (sampler, frontier result) pairs; one sampler may span several results (other models or NFEs)."""
    targets = {round(front["target_entropy"], 9) for _, front in runs}
    if len(targets) != 1:
        raise SystemExit(f"error: the frontier results were matched at different entropies: {sorted(targets)}")
    rows, seen = [], set()
    for sampler, front in runs:
        for r in matched_rows(front, labels, nfes):
            if (r["model"], r["nfe"], sampler) not in seen:
                seen.add((r["model"], r["nfe"], sampler))
                rows.append({**r, "sampler": sampler})
    base = {(r["model"], r["nfe"]): r["gen_ppl"] for r in rows if r["sampler"] == "ancestral"}
    for r in rows:
        b = base.get((r["model"], r["nfe"]))
        r["vs_ancestral"] = None if b is None else r["gen_ppl"] / b - 1
    return sorted(rows, key=lambda r: (labels.index(r["model"]), r["nfe"], r["sampler"] != "ancestral", r["sampler"]))


def markdown(rows: list[dict], target: float, header: str) -> str:
    lines = [header, "", f"Read at entropy {target:.3f}.", "",
             "| model | NFE | sampler | Gen PPL @ matched H | vs ancestral | MAUVE @ matched H | nearest point: H (gap), "
             "Gen PPL [95 % CI] | rep-4 |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        vs = "–" if r["vs_ancestral"] is None else f"{100 * r['vs_ancestral']:+.1f} %"
        lines.append(f"| {r['model']} | {r['nfe']} | {r['sampler']} | {r['gen_ppl']:.1f} | {vs} | "
                     f"{frontier.fmt(r['mauve'], '.3f')} | {r['nearest_entropy']:.3f} ({r['entropy_gap']:+.3f}), "
                     f"{r['nearest_gen_ppl']:.1f} [{ci(r['gen_ppl_ci_nearest'])}] | {frontier.fmt(r['rep_4'], '.4f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    paths = [run.split("=", 1) for run in args.runs]
    if any(len(p) != 2 or not all(p) for p in paths):
        raise SystemExit(f"error: --runs expects SAMPLER=FRONTIER.json, got {args.runs}")
    runs = [(sampler, json.loads(Path(p).read_text())) for sampler, p in paths]
    rows = compare(runs, args.labels, sorted(args.nfe))
    target = runs[0][1]["target_entropy"]
    judge = runs[0][1]["records"][0]["scorers"]["gen_ppl"]["judge"]["id"]
    header = (f"Samplers at matched entropy (text): {', '.join(dict.fromkeys(s for s, _ in paths))}; frontier results "
              f"{', '.join(p for _, p in paths)}; judge {judge}; didi-seq {__version__}")
    text = markdown(rows, target, header)
    print(text)
    reference = json.loads(args.reference.read_text())["reference"] if args.reference else None
    out = {"benchmark": "samplers", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "runs": [{"sampler": s, "frontier": p} for s, p in paths], "target_entropy": target, "rows": rows,
           "reference": reference, "didi_seq_version": __version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(text)
    series = {}
    for r in rows:
        series.setdefault(f"{r['model']}, {r['sampler']}", []).append({"nfe": r["nfe"], "gen_ppl": r["gen_ppl"],
                                                                       "mauve": r["mauve"]})
    baseline = None if reference is None else {"label": "teacher@1024, T = 1", "gen_ppl": reference["gen_ppl"],
                                               "mauve": reference.get("mauve")}
    plot_matched_vs_nfe(series, args.out.with_suffix(".png"), baseline,
                        title="Samplers at matched entropy: Gen PPL and MAUVE at teacher@1024's entropy")
    print(f"wrote {args.out}.json/.md/.png", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
