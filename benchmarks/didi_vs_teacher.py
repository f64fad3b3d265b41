"""The headline comparison: DiDi-Instruct student (ancestral and RGAS) vs its teacher across NFE.

Three series through ``nfe_sweep`` (same judge, same protocol, ≥ 256 samples over ≥ 3 seeds,
sample files and records cached in --work so reruns and the plain NFE sweep share work):
teacher at 8/16/32/64/128/1024, student ancestral and student RGAS at 8/16/32/64/128.
Then a per-sequence timing pass (batch 1, each model with its fastest exact sampler: the
p(x0) cache) for teacher@1024 and student@16, giving the measured wall-clock speed-up next
to the ratio of real network calls (the physical limit). Prints the table and the targets:

* student@16 Gen PPL ≤ teacher@1024 Gen PPL, with entropy within 1.5 % of teacher@1024;
* wall-clock speed-up ≥ 0.9 × the network-call ratio.

    python benchmarks/didi_vs_teacher.py --student student --teacher teacher
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nfe_sweep  # noqa: E402

from didi_seq import __version__  # noqa: E402
from didi_seq.evaluation.harness import write_result  # noqa: E402
from didi_seq.evaluation.plots import plot_gen_ppl_vs_nfe  # noqa: E402
from didi_seq.registry.plugins import get_domain  # noqa: E402
from didi_seq.sampling.generate import generate, load_model, sampler_config  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="text")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--student", default="student")
    ap.add_argument("--teacher-nfe", type=int, nargs="+", default=[8, 16, 32, 64, 128, 1024])
    ap.add_argument("--student-nfe", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--rgas-nfe", type=int, nargs="+", default=None,
                    help="NFEs of the RGAS series (default: --student-nfe); RGAS costs ~3-5x ancestral per sample")
    ap.add_argument("--samples", type=int, default=258)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--judge", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--guidance", type=float, nargs=2, default=[0.2, 1.0])
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--no-rgas", action="store_true", help="skip the RGAS series")
    ap.add_argument("--temperature", type=float, default=1.0, help="divides the x0 prediction's logits at every step")
    ap.add_argument("--timing-samples", type=int, default=8, help="sequences timed one at a time per model")
    ap.add_argument("--work", type=Path, default=Path("runs/nfe_sweep"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/didi_vs_teacher"))
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON written by an earlier run")
    return ap.parse_args(argv)


def plot(result: dict, path: Path) -> None:
    """Both series' Gen PPL and entropy vs NFE, with teacher@1024 (the target) as a dotted line."""
    t1024 = next((r for r in result["series"]["teacher"] if r["nfe"] == 1024), None)
    baseline = {"label": "teacher@1024", "gen_ppl": t1024["gen_ppl"], "entropy": t1024["entropy"]} if t1024 else None
    judge = result["reference"].get("judge", {}).get("id", "").split(" ")[0].split("/")[-1]
    plot_gen_ppl_vs_nfe(result["series"], path, result["reference"], baseline=baseline,
                        title=f"DiDi-Instruct student vs teacher ({judge} judge, mean ± std over seeds)")


def sweep(args, checkpoint: str, nfes: list[int], label: str, sampler: str = "ancestral") -> dict:
    argv = ["--domain", args.domain, "--checkpoint", checkpoint, "--nfe", *map(str, nfes), "--samples", str(args.samples),
            "--seeds", *map(str, args.seeds), "--threads", str(args.threads), "--work", str(args.work),
            "--out", str(args.work / f"series-{label}"), "--label", label, "--sampler", sampler,
            "--guidance", *map(str, args.guidance), "--candidates", str(args.candidates), "--temperature", str(args.temperature)]
    if args.judge:
        argv += ["--judge", args.judge]
    return nfe_sweep.main(argv)


def per_sequence_timing(model, nfe: int, n: int) -> dict:
    """Sample n sequences one at a time (batch 1) with the exact cache; wall-clock and calls per sequence."""
    config = lambda nfe: sampler_config("ancestral", model.domain.name, nfe=nfe)  # noqa: E731
    generate(model, config(min(nfe, 8)), num_samples=1, seed=999, batch_size=1)  # warm-up
    r = generate(model, config(nfe), num_samples=n, seed=123, batch_size=1).result
    return {"nfe": nfe, "sequences": n, "s_per_sequence": r.wall_clock_s / n, "network_calls_per_sequence": r.network_calls / n}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.replot:
        plot(json.loads(args.out.with_suffix(".json").read_text()), args.out.with_suffix(".png"))
        return
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    series = {"teacher": sweep(args, args.teacher, args.teacher_nfe, "teacher"),
              "student": sweep(args, args.student, args.student_nfe, "student")}
    if not args.no_rgas:
        series["student+RGAS"] = sweep(args, args.student, args.rgas_nfe or args.student_nfe, "student+RGAS", sampler="rgas")
    dom = get_domain(args.domain)
    teacher, student = load_model(dom, args.teacher), load_model(dom, args.student)
    timing = {"teacher@1024": per_sequence_timing(teacher, 1024, args.timing_samples),
              "student@16": per_sequence_timing(student, 16, args.timing_samples)}
    tt, ts = timing["teacher@1024"], timing["student@16"]
    speedup = tt["s_per_sequence"] / ts["s_per_sequence"]
    call_ratio = tt["network_calls_per_sequence"] / ts["network_calls_per_sequence"]

    rows = {name: {r["nfe"]: r for r in out["rows"]} for name, out in series.items()}
    ref = series["teacher"]["reference"]
    t1024 = rows["teacher"].get(1024)
    targets = {}
    for name in [n for n in series if n != "teacher"]:
        s16 = rows[name].get(16)
        if s16 and t1024:
            targets[name] = {"gen_ppl_le_teacher1024": s16["gen_ppl"] <= t1024["gen_ppl"],
                             "entropy_within_1.5pct": abs(s16["entropy"] - t1024["entropy"]) <= 0.015 * t1024["entropy"],
                             "student16_gen_ppl": s16["gen_ppl"], "teacher1024_gen_ppl": t1024["gen_ppl"],
                             "student16_entropy": s16["entropy"], "teacher1024_entropy": t1024["entropy"]}
    targets["speed"] = {"wall_clock_speedup": speedup, "network_call_ratio": call_ratio,
                        "speedup_ge_0.9x_call_ratio": speedup >= 0.9 * call_ratio}

    lines = ["| model | NFE | Gen PPL (mean ± std over seeds) | pooled [95 % bootstrap CI] | entropy | s/sample (batch 32) "
             "| seq evals/sample | disc calls/sample |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, by_nfe in rows.items():
        for nfe, r in sorted(by_nfe.items()):
            ci = f" [{r['gen_ppl_ci'][0]:.1f}, {r['gen_ppl_ci'][1]:.1f}]" if r.get("gen_ppl_ci") else ""
            lines.append(f"| {name} | {nfe} | {r['gen_ppl']:.1f} ± {r['gen_ppl_std'] or 0:.1f} | {r['gen_ppl_pooled']:.1f}{ci} | "
                         f"{r['entropy']:.3f} | "
                         f"{r['s_per_sample']:.3f} | {r['sequence_evaluations_per_sample']:.1f} | "
                         f"{r['discriminator_calls_per_sample']:.2f} |")
    lines.append(f"| real validation text | – | {ref['gen_ppl']:.1f} | | {ref['entropy']:.3f} | | | |")
    lines += ["", f"Per sequence (batch 1, exact cache): teacher@1024 {tt['s_per_sequence']:.2f} s with "
              f"{tt['network_calls_per_sequence']:.1f} network calls; student@16 {ts['s_per_sequence']:.3f} s with "
              f"{ts['network_calls_per_sequence']:.1f} calls → wall-clock speed-up {speedup:.1f}× vs call ratio {call_ratio:.1f}× "
              f"({speedup / call_ratio:.2f} of the limit).", "", "Targets: " + json.dumps(targets)]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "didi_vs_teacher", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "targets": targets,
        "timing": timing, "series": {k: v["rows"] for k, v in series.items()}, "reference": ref, "threads": args.threads,
        "didi_seq_version": __version__, "wall_clock_s": round(time.perf_counter() - t0, 1)}
    write_result(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(table)
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out}.json/.md/.png", file=sys.stderr)


if __name__ == "__main__":
    main()
