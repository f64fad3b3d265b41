"""A distillation run's learning curve: Gen PPL and MAUVE at matched entropy against training minutes.

A single point says little about a method that may still be improving, or never moved; a curve
tells which. For checkpoints along one run (picked by the training wall-clock their provenance
records, e.g. 10, 20, 40, 80, 160 minutes) the student is sampled at each NFE over the
temperature grid of arXiv 2610.06648 and read at a target entropy (``frontier.py --bracket``:
only the grid points straddling it are judged), with the nearest point's 95 % bootstrap CI.
Teacher lines (teacher@NFE and teacher@1024 at the same entropy) come from a ``methods.py``
result (``--baseline``) or are measured here (``--match teacher@1024``).

The run's ``metrics.jsonl`` is drawn beside it (loss, KL, reward, advantage, gradient norm,
entropy, rolling means against minutes): what decides whether a method can learn at all.

Checkpoints come from the run directory and from ``--snapshots`` folders (a copy of each
published checkpoint; a run keeps only its newest two). Every frontier cell is a file in --work,
so a curve grows as the run goes on: re-run with more --minutes and only new cells are computed.

    python benchmarks/learning_curve.py --run runs/sdtt64 --snapshots runs/sdtt64.snapshots \\
        --label sdtt-64to8 --minutes 10 20 40 80 160 --nfe 8 16 --baseline benchmarks/results/methods.json

Writes ``<out>.json``, ``<out>.md``, ``<out>.png`` (Gen PPL and MAUVE against minutes) and
``<out>_training.png`` (the training log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier  # noqa: E402
from methods import ci, matched_rows  # noqa: E402

from didi_seq import __version__  # noqa: E402
from didi_seq.evaluation.harness import write_result  # noqa: E402
from didi_seq.evaluation.plots import plot_learning_curve, plot_training_log  # noqa: E402

LOG_KEYS = ("loss", "kl", "reward", "reward_std", "advantage_abs", "grad_norm", "student_grad_norm", "disc_acc",
            "drift", "entropy", "target_entropy", "fill_rep1")  # the ones a run logs are drawn (each method logs its own)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="the distillation run directory (metrics.jsonl, checkpoints/)")
    ap.add_argument("--snapshots", type=Path, nargs="*", default=[], help="folders holding more of its step_* checkpoints")
    ap.add_argument("--label", default=None, help="the run's name in tables and plots (default: the run folder's)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 20, 40, 80, 160],
                    help="training minutes to read the run at (the last checkpoint at or before each)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a methods.py JSON: its target entropy and teacher rows (else --match is measured here)")
    ap.add_argument("--match", default="teacher@1024", metavar="CHECKPOINT@NFE", help="without --baseline: the target")
    ap.add_argument("--sampler", default="ancestral")
    ap.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--samples", type=int, default=258)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--judge", default=None)
    ap.add_argument("--no-mauve", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("runs/learning_curve"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curve"))
    return ap.parse_args(argv)


def checkpoints_of(run: Path, snapshots: list[Path]) -> list[dict]:
    """Every complete checkpoint of the run (its own and the snapshots'), one per step, by step:
    path, step and the training wall-clock its provenance records. A snapshot's copy wins over the
    run's own, which a run still training may retire before it is judged."""
    found = {}
    for folder in [*snapshots, run / "checkpoints"]:
        for path in sorted(Path(folder).glob("step_*")):
            prov = path / "provenance.json"
            if path.is_dir() and prov.exists():
                p = json.loads(prov.read_text())
                found.setdefault(p["step"], {"path": path, "step": p["step"], "minutes": p["wall_clock_s"] / 60})
    return [found[s] for s in sorted(found)]


def pick(checkpoints: list[dict], minutes: list[float]) -> list[dict]:
    """For each requested minute the last checkpoint trained at most that long (each checkpoint once)."""
    chosen = []
    for m in sorted(minutes):
        before = [c for c in checkpoints if c["minutes"] <= m + 1e-6]
        if before and before[-1] not in chosen:
            chosen.append(before[-1])
    return chosen


def teacher_lines(args) -> tuple[float, dict, dict[int, dict]]:
    """(target entropy, the --match model's point, teacher rows by NFE): from --baseline or measured."""
    if args.baseline:
        base = json.loads(args.baseline.read_text())
        rows = {r["nfe"]: r for r in base["rows"] if r["model"] == "teacher"}
        return base["target_entropy"], base["reference"], rows
    checkpoint, _ = frontier.parse_match(args.match)  # its teacher rows come from the same model
    front = frontier.main(common_argv(args, checkpoint, "teacher", "teacher") + ["--match", args.match, "--match-label", "teacher"])
    rows = {r["nfe"]: r for r in matched_rows(front, ["teacher"], sorted(args.nfe))}
    return front["target_entropy"], front["matched_to"], rows


def common_argv(args, checkpoint: str, label: str, name: str) -> list[str]:
    argv = ["--checkpoints", checkpoint, "--labels", label, "--nfe", *map(str, args.nfe), "--bracket",
            "--samples", str(args.samples), "--seeds", *map(str, args.seeds), "--threads", str(args.threads),
            "--work", str(args.work), "--out", str(args.work / f"frontier_{name}")]
    argv += [f"--sampler-option={o}" for o in args.sampler_option]
    return argv + (["--judge", args.judge] if args.judge else []) + (["--no-mauve"] if args.no_mauve else [])


def read_log(run: Path) -> list[dict]:
    """metrics.jsonl with each line's training minutes (the running sum of its s_per_step)."""
    path, rows, total = run / "metrics.jsonl", [], 0.0
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            total += rec.get("s_per_step", 0.0)
            rows.append({**rec, "minutes": total / 60})
    return rows


def markdown(rows: list[dict], teacher: dict[int, dict], reference: dict, header: str) -> str:
    lines = [header, "", f"Target entropy: {reference.get('curve', 'teacher @ NFE 1024')} at T = 1, "
             f"Gen PPL {reference['gen_ppl']:.1f}" + (f", MAUVE {reference['mauve']:.3f}" if reference.get("mauve") else "")
             + ".", "", "| minutes | step | NFE | Gen PPL @ matched H | MAUVE | nearest point: H gap, Gen PPL [95 % CI] "
             "| teacher@NFE Gen PPL | vs teacher@NFE |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = teacher.get(r["nfe"])
        vs = f"{100 * (r['gen_ppl'] / t['gen_ppl'] - 1):+.1f} %" if t else "–"
        lines.append(f"| {r['minutes']:.1f} | {r['step']} | {r['nfe']} | {r['gen_ppl']:.1f} | "
                     f"{frontier.fmt(r['mauve'], '.3f')} | {r['entropy_gap']:+.3f}, "
                     f"{r['nearest_gen_ppl']:.1f} [{ci(r['gen_ppl_ci_nearest'])}] | "
                     f"{frontier.fmt(t['gen_ppl']) if t else '–'} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    label = args.label or args.run.name
    chosen = pick(checkpoints_of(args.run, args.snapshots), args.minutes)
    if not chosen:
        raise SystemExit(f"error: {args.run} has no checkpoint trained at most {max(args.minutes):g} minutes")
    target, reference, teacher = teacher_lines(args)
    rows = []
    for ck in chosen:
        name = f"{label}-step{ck['step']}"
        front = frontier.main(common_argv(args, str(ck["path"]), name, name) + ["--target-entropy", repr(target),
                                                                               "--sampler", args.sampler])
        for r in matched_rows(front, [name], sorted(args.nfe)):
            rows.append({**r, "model": label, "step": ck["step"], "minutes": ck["minutes"], "checkpoint": str(ck["path"])})
    sampler = " ".join([args.sampler, *args.sampler_option])
    header = (f"Learning curve of {label} ({args.run}): {sampler} sampler, {args.samples} samples over seeds {args.seeds} "
              f"per cell, read at entropy {target:.3f} (arXiv 2610.06648 matched entropy); didi-seq {__version__}")
    text = markdown(rows, teacher, reference, header)
    print(text)
    log = read_log(args.run)
    out = {"benchmark": "learning_curve", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "run": str(args.run), "label": label, "sampler": sampler, "target_entropy": target, "reference": reference,
           "teacher": {str(k): v for k, v in teacher.items()}, "rows": rows,
           "training_log_keys": [k for k in LOG_KEYS if any(k in r for r in log)],
           "didi_seq_version": __version__, "wall_clock_s": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(text)
    series = {}
    for r in rows:
        series.setdefault(r["nfe"], []).append(r)
    plot_learning_curve(series, {n: t for n, t in teacher.items() if n in series}, reference, args.out.with_suffix(".png"),
                        title=f"{label}: Gen PPL and MAUVE at teacher@1024's entropy against distillation minutes"
                              + ("" if sampler == "ancestral" else f" ({sampler} sampler)"))
    if log:
        plot_training_log(log, out["training_log_keys"], args.out.with_name(args.out.name + "_training.png"),
                          title=f"{label}: training log (rolling mean over 25 steps)")
    print(f"wrote {args.out}.json/.md/.png", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
