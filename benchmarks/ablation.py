"""Cumulative ablation of DiDi-Instruct (the paper's cumulative ablation table, arXiv 2509.25035) at small scale.

Rows add one component at a time: baseline (one-jump student, independent noise level,
constant ω, uniform π, no regulariser) → +score decomposition → +coupled time → +ω(t) →
+π(t) → +regularisation → +RGAS (sampling only, on the previous row's checkpoint). Each
training row is a ``didi-seq distill`` run from the same teacher, seed and step budget;
each cell is Gen PPL (and entropy) from ``nfe_sweep`` at NFE 8/16/32 with the harness's
judge. Runs and samples are cached in --work, so an interrupted ablation resumes.

    python benchmarks/ablation.py --steps 150 --samples 258
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nfe_sweep  # noqa: E402

from didi_seq.evaluation.harness import write_result  # noqa: E402

ROWS = [
    ("baseline", ["--no-score-decomposition", "--no-coupled-time", "--omega", "constant", "--pi", "uniform",
                  "--regularization", "none"]),
    ("+ score decomposition", ["--score-decomposition", "--no-coupled-time", "--omega", "constant", "--pi", "uniform",
                               "--regularization", "none"]),
    ("+ coupled time", ["--score-decomposition", "--coupled-time", "--omega", "constant", "--pi", "uniform",
                        "--regularization", "none"]),
    ("+ ω(t)", ["--score-decomposition", "--coupled-time", "--omega", "elbo", "--pi", "uniform", "--regularization", "none"]),
    ("+ π(t)", ["--score-decomposition", "--coupled-time", "--omega", "elbo", "--pi", "beta22", "--regularization", "none"]),
    ("+ regularisation", ["--score-decomposition", "--coupled-time", "--omega", "elbo", "--pi", "beta22",
                          "--regularization", "jeffrey"]),
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="text")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--samples", type=int, default=258)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--judge", default=None)
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of every evaluation")
    ap.add_argument("--work", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation"))
    return ap.parse_args(argv)


def train(args, name: str, switches: list[str]) -> Path:
    run = args.work / name.replace(" ", "_").replace("+", "plus").replace("(", "").replace(")", "")
    run.parent.mkdir(parents=True, exist_ok=True)
    if (run / "checkpoints").exists() and any((run / "checkpoints").glob(f"step_{args.steps:07d}")):
        return run
    cmd = [sys.executable, "-m", "didi_seq_cli.main", "distill", "--domain", args.domain, "--teacher", args.teacher,
           "--out", str(run), "--steps", str(args.steps), "--threads", str(args.threads), *switches]
    if (run / "LATEST").exists():
        cmd.append("--resume")
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run


def evaluate(args, checkpoint: Path, label: str, sampler: str = "ancestral") -> dict:
    argv = ["--domain", args.domain, "--checkpoint", str(checkpoint), "--nfe", *map(str, args.nfe), "--samples",
            str(args.samples), "--seeds", *map(str, args.seeds), "--threads", str(args.threads), "--work", str(args.work / "samples"),
            "--out", str(args.work / f"eval-{label}"), "--label", label, "--sampler", sampler,
            "--temperature", str(args.temperature)]
    if args.judge:
        argv += ["--judge", args.judge]
    return {r["nfe"]: r for r in nfe_sweep.main(argv)["rows"]}


def format_table(rows, nfes, steps, samples, seeds) -> str:
    """Markdown: one row per cumulative configuration, Gen PPL mean ± std over seeds (entropy)."""
    lines = [f"Cumulative ablation, {steps} distillation steps per row, Gen PPL mean ± std over seeds (entropy in nats), "
             f"{samples} samples over seeds {seeds}", "", "| configuration (cumulative) | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name, by_nfe in rows:
        cells = [f"{by_nfe[n]['gen_ppl']:.1f} ± {by_nfe[n]['gen_ppl_std'] or 0:.1f} ({by_nfe[n]['entropy']:.3f})" for n in nfes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    results, last = [], None
    for name, switches in ROWS:
        last = train(args, name, switches)
        results.append((name, switches, evaluate(args, last, name)))
    results.append(("+ RGAS (full)", ["--sampler rgas"], evaluate(args, last, "full-rgas", sampler="rgas")))
    table = format_table([(n, r) for n, _, r in results], args.nfe, args.steps, args.samples, args.seeds)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), {
        "benchmark": "ablation", "command": " ".join(["python", "benchmarks/ablation.py", *sys.argv[1:]]), "steps": args.steps,
        "samples": args.samples, "seeds": args.seeds, "rows": [
        {"configuration": n, "switches": s, "results": {str(k): v for k, v in r.items()}} for n, s, r in results]})
    args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
