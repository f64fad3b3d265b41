"""Distillation methods side by side at equal compute, compared at matched entropy.

Every method distils the embedded text teacher under the same wall-clock budget
(``distill --max-minutes``, one thread each; two runs may share the two cores), then the
teacher and each student are sampled at NFE 8 / 16 / 32 over the temperature grid of
arXiv 2610.06648 and read at the entropy of teacher@1024 at T = 1 (``frontier.py --match
teacher@1024 --bracket``: only the grid points that straddle the target are evaluated).
The table reports Gen PPL and MAUVE at matched entropy (linear interpolation between the two
bracketing grid points; the nearest point's where none brackets), the nearest point's
entropy, rep-4, network rows and seconds per sample, and each method's distillation steps,
wall-clock and training tokens/s.

Resumable end to end: a distillation run that stopped early is resumed (``--resume``), a
finished one is reused, and every frontier cell is one file in --work.

    python benchmarks/methods.py --budget-minutes 30 --work runs/methods

Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (Gen PPL and MAUVE at matched entropy
against NFE, one line per model, teacher@1024 as a line).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier  # noqa: E402

from didi_seq import __version__  # noqa: E402
from didi_seq.evaluation.harness import write_result  # noqa: E402
from didi_seq.evaluation.plots import plot_matched_vs_nfe  # noqa: E402

# Step counts give each method's schedule a length; the budget is what binds. SDTT needs its
# rounds to end inside the budget (7 rounds × 150 steps ≈ 26 min at ≈ 1.45 s/step, one thread);
# DiDi-Instruct decays its learning rate to 0 at its last step (its default 400 ≈ 33 min at ≈ 5 s/step);
# MMD runs at a constant rate, so its cap is never reached.
STEPS = {"sdtt": 1050, "mmd": 100000, "didi-instruct": 400}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["sdtt", "mmd", "didi-instruct"])
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="distillation wall-clock per method")
    ap.add_argument("--steps", nargs="*", default=[], metavar="METHOD=N", help="override a method's step count")
    ap.add_argument("--flags", nargs="*", default=[], metavar="METHOD=FLAGS",
                    help="further distill flags of one method, e.g. 'mmd=--mmd-feature-block 0'")
    ap.add_argument("--extra", nargs="*", default=[], metavar="LABEL=CHECKPOINT",
                    help="further students to evaluate beside the distilled ones (e.g. the shipped one)")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--match-nfe", type=int, default=1024, help="the teacher's NFE whose T = 1 entropy is matched")
    ap.add_argument("--samples", type=int, default=258)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--judge", default=None)
    ap.add_argument("--no-mauve", action="store_true")
    ap.add_argument("--reference-samples", type=int, default=256, help="real validation blocks (MAUVE's reference)")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: each metric's own)")
    ap.add_argument("--distill-only", action="store_true", help="run (or resume) the distillations and stop")
    ap.add_argument("--evaluate-only", action="store_true", help="only evaluate runs that already exist")
    ap.add_argument("--work", type=Path, default=Path("runs/methods"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/methods"))
    return ap.parse_args(argv)


def pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"error: {what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def run_state(run: Path) -> dict | None:
    """The latest checkpoint's step and training wall-clock (None before the first checkpoint)."""
    latest = run / "LATEST"
    if not latest.exists():
        return None
    prov = json.loads((run / "checkpoints" / latest.read_text().strip() / "provenance.json").read_text())
    return {"step": prov["step"], "wall_clock_s": prov["wall_clock_s"], "config": prov.get("distill_config") or {}}


def finished(state: dict | None, steps: int, budget_minutes: float) -> bool:
    """Whether a run has stopped for good: all its steps done, or its wall-clock budget spent."""
    return state is not None and (state["step"] >= steps or state["wall_clock_s"] >= 60 * budget_minutes)


def finished_run(method: str, steps: int, args) -> dict:
    """--evaluate-only: the run's state, refusing a missing or unfinished run (one still training would be
    judged on an intermediate checkpoint)."""
    state = run_state(args.work / method)
    if state is None:
        raise SystemExit(f"error: no {method} run in {args.work / method}; run without --evaluate-only first")
    if not finished(state, steps, args.budget_minutes):
        raise SystemExit(f"error: the {method} run in {args.work / method} is at step {state['step']} of {steps}, "
                         f"{state['wall_clock_s'] / 60:.1f} of {args.budget_minutes:g} min: let it finish "
                         f"(or run without --evaluate-only to resume it)")
    return state


def distill(method: str, steps: int, args) -> dict:
    """Run, resume or reuse ``method``'s distillation in --work; returns its run state."""
    run = args.work / method
    state = run_state(run)
    if not finished(state, steps, args.budget_minutes):
        cmd = [sys.executable, "-m", "didi_seq", "distill", "--domain", "text", "--method", method, "--out", str(run),
               "--teacher", args.teacher,
               "--steps", str(steps), "--max-minutes", f"{args.budget_minutes:g}", "--threads", str(args.threads)]
        cmd += shlex.split(pairs(args.flags, "--flags").get(method, ""))
        if state is not None:
            cmd.append("--resume")
        print(("resuming: " if state else "running: ") + " ".join(cmd[2:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        state = run_state(run)
    return state


def training_summary(method: str, step: int, wall_clock_s: float, cfg: dict, length: int) -> dict:
    """Steps, wall-clock and training tokens/s: the sequences a step trains on (DiDi-Instruct: G rollouts
    per row) × their length, over the wall-clock."""
    rows = cfg.get("batch_size", 0) * (cfg.get("group_size", 1) if method.lower() == "didi-instruct" else 1)
    return {"method": method, "steps": step, "wall_clock_s": wall_clock_s, "batch_rows": rows,
            "tokens_per_s": round(step * rows * length / max(wall_clock_s, 1e-9), 1), "config": cfg}


def run_training(method: str, run: Path, state: dict) -> dict:
    config = json.loads((run / "checkpoints" / (run / "LATEST").read_text().strip() / "config.json").read_text())
    return training_summary(method, state["step"], state["wall_clock_s"], state["config"], config["model"]["length"])


def checkpoint_training(checkpoint: str) -> dict | None:
    """The training summary a student checkpoint's provenance records (None for a teacher or a hub model)."""
    from didi_seq.registry.plugins import get_domain
    from didi_seq.sampling.generate import load_model

    model = load_model(get_domain("text"), checkpoint)
    prov = model.adapter.provenance.extra
    if prov.get("kind") != "student" or "wall_clock_s" not in prov:
        return None
    return training_summary(prov.get("method") or "didi-instruct", prov["step"], prov["wall_clock_s"],
                            prov.get("distill_config") or {}, model.adapter.model.config.length)


def matched_rows(front: dict, labels: list[str], nfes: list[int]) -> list[dict]:
    """One row per label × NFE from the frontier's output: values at matched entropy and the nearest point's costs."""
    by_curve = {row["curve"]: row for row in front["matched"]}
    rows = []
    for label in labels:
        for nfe in nfes:
            name = f"{label} @ NFE {nfe}"
            if name not in by_curve:
                continue
            m = by_curve[name]
            pick = m["interpolated"] or m["nearest"]
            point = next(p for p in front["curves"][name] if p["temperature"] == m["nearest"]["temperature"])
            rows.append({"model": label, "nfe": nfe, "read": "interpolated" if m["interpolated"] else "nearest",
                         "temperature": pick["temperature"], "gen_ppl": pick["gen_ppl"], "mauve": pick.get("mauve"),
                         "nearest_entropy": m["nearest"]["entropy"], "entropy_gap": m["nearest"]["entropy_gap"],
                         "nearest_gen_ppl": point["gen_ppl"], "gen_ppl_ci_nearest": point.get("gen_ppl_ci"),
                         "rep_4": point.get("rep_4"),
                         "rows_per_sample": point.get("rows_evaluated_per_sample"),
                         "s_per_sample": point.get("s_per_sample")})
    return rows


def ci(interval) -> str:
    return "–" if not interval else f"{interval[0]:.1f}–{interval[1]:.1f}"


def fmt(x, spec=".1f"):
    return "–" if x is None else format(x, spec)


def markdown(rows: list[dict], training: dict[str, dict], reference: dict, header: str) -> str:
    lines = [header, "",
             f"Target: {reference['curve']} at T = 1: entropy {reference['entropy']:.3f}, Gen PPL {reference['gen_ppl']:.1f}"
             + (f", MAUVE {reference['mauve']:.3f}" if reference.get("mauve") is not None else "") + ".", "",
             "| model | NFE | Gen PPL @ matched H | MAUVE @ matched H | read at T | nearest point: H (gap), Gen PPL [95 % CI] "
             "| rep-4 | rows/sample | s/sample | distill steps | distill wall-clock | tokens/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = training.get(r["model"])
        tr = (f"{t['steps']} | {t['wall_clock_s'] / 60:.1f} min | {t['tokens_per_s']:.0f}" if t else "– | – | –")
        lines.append(f"| {r['model']} | {r['nfe']} | {r['gen_ppl']:.1f} | {fmt(r['mauve'], '.3f')} | "
                     f"{r['temperature']:.3f} ({r['read']}) | {r['nearest_entropy']:.3f} ({r['entropy_gap']:+.3f}), "
                     f"{r['nearest_gen_ppl']:.1f} [{ci(r['gen_ppl_ci_nearest'])}] | "
                     f"{fmt(r['rep_4'], '.3f')} | {fmt(r['rows_per_sample'])} | {fmt(r['s_per_sample'], '.3f')} | {tr} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    steps = {**STEPS, **{k: int(v) for k, v in pairs(args.steps, "--steps").items()}}
    extra = pairs(args.extra, "--extra")
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    training = {}
    for method in args.methods:
        run = finished_run if args.evaluate_only else distill
        state = run(method, steps.get(method, 400), args)
        training[method] = run_training(method, args.work / method, state)
        print(f"{method}: {state['step']} steps in {state['wall_clock_s'] / 60:.1f} min", file=sys.stderr, flush=True)
    if args.distill_only:
        return {"training": training}
    for label, checkpoint in extra.items():
        summary = checkpoint_training(checkpoint)
        if summary is not None:
            training[label] = summary
    labels = ["teacher", *args.methods, *extra]
    checkpoints = [args.teacher, *(str(args.work / m) for m in args.methods), *extra.values()]
    argv_f = ["--checkpoints", *checkpoints, "--labels", *labels, "--nfe", *map(str, args.nfe),
              "--match", f"{args.teacher}@{args.match_nfe}", "--match-label", "teacher", "--bracket",
              "--samples", str(args.samples), "--seeds", *map(str, args.seeds), "--threads", str(args.threads),
              "--work", str(args.work / "frontier"), "--out", str(args.out) + "_frontier"]
    argv_f += (["--judge", args.judge] if args.judge else []) + (["--no-mauve"] if args.no_mauve else [])
    argv_f += ["--reference-samples", str(args.reference_samples)] + (["--bootstrap", str(args.bootstrap)] if args.bootstrap else [])
    front = frontier.main(argv_f)
    rows = matched_rows(front, labels, sorted(args.nfe))
    reference = front["matched_to"]
    judge = front["records"][0]["scorers"]["gen_ppl"]["judge"]["id"]
    header = (f"Distillation methods at equal compute ({args.budget_minutes:g} min of training wall-clock each, "
              f"{args.threads} thread(s)), text domain, ancestral sampler; {args.samples} samples over seeds "
              f"{args.seeds} per cell; judge {judge}; matched entropy per arXiv 2610.06648; didi-seq {__version__}")
    text = markdown(rows, training, reference, header)
    print(text)
    series = {}
    for r in rows:
        series.setdefault(r["model"], []).append({"nfe": r["nfe"], "gen_ppl": r["gen_ppl"], "mauve": r["mauve"]})
    baseline = {"label": f"teacher@{args.match_nfe}, T = 1", "gen_ppl": reference["gen_ppl"], "mauve": reference.get("mauve")}
    out = {"benchmark": "methods", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "budget_minutes": args.budget_minutes, "threads": args.threads, "steps": steps, "training": training,
           "rows": rows, "reference": reference, "target_entropy": front["target_entropy"],
           "frontier": str(args.out) + "_frontier.json", "didi_seq_version": __version__,
           "wall_clock_s": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(text)
    plot_matched_vs_nfe(series, args.out.with_suffix(".png"), baseline,
                        title=f"Methods at equal compute ({args.budget_minutes:g} min each): "
                              f"Gen PPL and MAUVE at teacher@{args.match_nfe}'s entropy")
    print(f"wrote {args.out}.json/.md/.png", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
