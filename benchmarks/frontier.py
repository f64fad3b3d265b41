"""The Gen PPL–entropy frontier: each model × NFE swept over the sampling temperature T.

Gen PPL alone can be bought by sampling at lower entropy ("Hacking Generative Perplexity",
arXiv 2606.08417), so few-step methods are compared at *matched entropy* (arXiv 2610.06648,
yandex-research/dlm-mmd ``mmd/owt_pareto.py``): the x0 prediction's logits are divided by T
at every ancestral step, T runs over a grid (default that script's: 0.75 … 1.20), and each
model × NFE is reported where its mean per-sample unigram entropy meets a reference entropy
(default: the real validation text's, scored the same way). Two readings of "meets":

* nearest: the grid point whose entropy is nearest the reference (what ``owt_pareto.py`` does);
* interpolated: linear interpolation in entropy between the two grid points that bracket it
  (what that paper's text describes); absent when no pair brackets it (never extrapolated).

For every cell (model, NFE, T) ``--samples`` sequences are drawn over ``--seeds`` and scored by
``didi_seq.evaluation.harness`` (Gen PPL with its bootstrap CI, entropy, rep-n and, with the
``mauve`` extra, MAUVE against the real-data reference). Entropy here is of the model's own
tokens, not the judge's (``didi_seq.evaluation.metrics``). Each cell is one JSON in --work, so an
interrupted sweep continues where it stopped; the reference's scoring is cached by evaluate.

Writes ``<out>.json`` (every cell and the matched-entropy table), ``<out>.md`` and ``<out>.png``
(Gen PPL and MAUVE against entropy, one curve per model × NFE, the reference entropy as a line).

    python benchmarks/frontier.py --checkpoints teacher student --nfe 16 1024 --samples 258
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import torch

from didi_seq import __version__
from didi_seq.evaluation.harness import evaluate, write_result
from didi_seq.evaluation.plots import plot_frontier
from didi_seq.io.samples import read_jsonl, write_jsonl
from didi_seq.registry.plugins import get_domain

# arXiv 2610.06648's temperature grid (yandex-research/dlm-mmd, mmd/owt_pareto.py)
TEMPERATURES = [0.75, 0.80, 0.85, 0.875, 0.90, 0.925, 0.95, 0.975, 1.00, 1.05, 1.10, 1.20]
VALUES = ("gen_ppl", "mauve", "temperature")  # what the matched-entropy table reads off the curve


def matched_entropy(points: list[dict], target: float) -> dict:
    """Read one curve (points with entropy and VALUES) at entropy ``target``.

    ``nearest``: the point whose entropy is nearest ``target``. ``interpolated``: the values
    linearly interpolated in entropy between the two points that bracket ``target`` (adjacent
    once sorted by entropy), or None when the curve does not reach it on both sides.
    """
    if not points:
        raise ValueError("no points")
    nearest = min(points, key=lambda p: abs(p["entropy"] - target))
    ordered = sorted(points, key=lambda p: p["entropy"])
    interpolated = None
    for lo, hi in zip(ordered, ordered[1:], strict=False):
        if lo["entropy"] <= target <= hi["entropy"]:
            w = 0.0 if hi["entropy"] == lo["entropy"] else (target - lo["entropy"]) / (hi["entropy"] - lo["entropy"])
            interpolated = {"entropy": target, "between_temperatures": [lo["temperature"], hi["temperature"]]}
            for key in VALUES:
                if lo.get(key) is not None and hi.get(key) is not None:
                    interpolated[key] = lo[key] + w * (hi[key] - lo[key])
            break
    return {"target_entropy": target, "nearest": {**{k: nearest.get(k) for k in (*VALUES, "entropy")},
                                                  "entropy_gap": nearest["entropy"] - target},
            "interpolated": interpolated}


def bracket(grid: list[float], target: float, entropy_at, start: float = 1.0) -> list[float]:
    """The temperatures to evaluate so that ``target`` is bracketed, cheapest first: ``entropy_at(T)``
    at the grid point nearest ``start``, then one grid point at a time towards the target (entropy
    rises with T) until the last two evaluated straddle it or the grid ends. A model × NFE whose
    T = 1 entropy is near the target costs two cells instead of the grid's twelve."""
    grid = sorted(grid)
    i = min(range(len(grid)), key=lambda k: abs(grid[k] - start))
    h = entropy_at(grid[i])
    done, direction = [grid[i]], (1 if h < target else -1)
    j = i + direction
    while h != target and 0 <= j < len(grid):
        h_next = entropy_at(grid[j])
        done.append(grid[j])
        if (h_next - target) * (h - target) <= 0:
            break
        h, j = h_next, j + direction
    return done


def parse_match(text: str) -> tuple[str, int]:
    """``CHECKPOINT@NFE`` → (checkpoint, NFE); the checkpoint part may itself hold '@' (hub revisions)."""
    checkpoint, sep, nfe = text.rpartition("@")
    if not sep or not checkpoint or not nfe.isdigit() or int(nfe) < 1:
        raise SystemExit(f"error: --match expects CHECKPOINT@NFE (e.g. teacher@1024), got {text!r}")
    return checkpoint, int(nfe)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="text")
    ap.add_argument("--checkpoints", nargs="+", default=["teacher"], help="'teacher', 'student', paths or hub ids")
    ap.add_argument("--labels", nargs="+", default=None, help="one label per checkpoint (default: the checkpoint ids)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16, 1024])
    ap.add_argument("--temperatures", type=float, nargs="+", default=TEMPERATURES)
    ap.add_argument("--samples", type=int, default=258, help="samples per cell, split evenly over the seeds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sampler", default="ancestral",
                    help="sampler of the --checkpoints models, with its default options (e.g. rgas: does a reward-guided "
                         "sampler win by lowering entropy?); the --match model is always sampled ancestrally")
    ap.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of --sampler (repeatable), e.g. schedule=cosine; its value is read as JSON when it parses")
    ap.add_argument("--judge", default=None, help="judge name/path (default: the harness's offline default)")
    ap.add_argument("--reference-samples", type=int, default=256, help="real validation blocks: reference entropy, MAUVE")
    ap.add_argument("--target-entropy", type=float, default=None, help="match here instead of the reference's entropy")
    ap.add_argument("--match", default=None, metavar="CHECKPOINT@NFE",
                    help="match the entropy of this model at this NFE and T = 1 (e.g. teacher@1024), its own row in the table")
    ap.add_argument("--match-label", default=None, help="the --match model's label (default: its checkpoint id)")
    ap.add_argument("--bracket", action="store_true",
                    help="per model × NFE evaluate only the grid points that bracket the target, walking from T = 1")
    ap.add_argument("--no-mauve", action="store_true", help="skip MAUVE (it needs the mauve extra)")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: each metric's own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/frontier"), help="sample files and per-cell records")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/frontier"), help="output prefix (.json/.md/.png)")
    return ap.parse_args(argv)


def sampler_options(pairs: list[str]) -> dict:
    """``--sampler-option KEY=VALUE`` pairs as a dict (values read as JSON when they parse, else strings)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --sampler-option expects KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def draw(model, nfe: int, temperature: float, seed: int, n: int, batch_size: int, path: Path,
         sampler: str = "ancestral", options: dict | None = None) -> list[dict]:
    """One seed's samples of one cell, written as the CLI writes them (or read back when already there)."""
    from didi_seq.sampling.generate import generate, sampler_config

    records = cached(path, model, sampler)
    if records is not None:
        return records
    cfg = sampler_config(sampler, model.domain.name, nfe=nfe, temperature=temperature, **(options or {}))
    records = generate(model, cfg, sampler=sampler, num_samples=n, seed=seed, batch_size=batch_size).records
    write_jsonl(path, records)
    return records


def cached(path: Path, model, sampler: str = "ancestral"):
    """What an earlier run left at ``path`` in --work (a cell's record or a seed's samples), or None.
    Files are named by label, so a label reused for another checkpoint (a re-distilled student) would
    silently read the old model's samples; the checkpoint hash (and sampler) every record carries must match."""
    if not path.exists():
        return None
    data = read_jsonl(path) if path.suffix == ".jsonl" else json.loads(path.read_text())
    rows = data if isinstance(data, list) else [data]
    made_by = {r.get("checkpoint_sha256") for r in rows}
    expected = model.adapter.provenance.model_sha256
    if made_by != {expected}:
        found = ", ".join(sorted(str(h)[:12] for h in made_by))
        raise SystemExit(f"error: {path} was made by checkpoint {found}, not by this model ({str(expected)[:12]}): "
                         f"give it another label (--labels) or another --work")
    if {r.get("sampler") for r in rows} != {sampler}:
        raise SystemExit(f"error: {path} was sampled with {sorted({str(r.get('sampler')) for r in rows})}, not {sampler}")
    return data


def sampling_cost(samples: list[dict]) -> dict:
    """Per-sample sampling cost of a cell from its records (each seed's run totals repeat in its records):
    wall-clock seconds, batched network calls and sequence evaluations (rows the network computed)."""
    runs = {r["seed"]: r["run"] for r in samples}
    n = max(1, len(samples))
    return {"s_per_sample": round(sum(r["wall_clock_s"] for r in runs.values()) / n, 4),
            "network_calls_per_sample": round(sum(r["network_calls"] for r in runs.values()) / n, 3),
            "rows_evaluated_per_sample": round(sum(r["rows_evaluated"] for r in runs.values()) / n, 2)}


def cell_file(args, label: str, nfe: int, temperature: float, suffix: str = ".json") -> Path:
    sampler = "" if args.sampler == "ancestral" else f"_{args.sampler}"  # ancestral cells keep their old names
    sampler += "".join(f"_{o.replace(':', '').replace('=', '-')}" for o in sorted(getattr(args, "sampler_option", [])))
    return args.work / label.replace("/", "_") / f"nfe{nfe}_T{temperature:g}{sampler}{suffix}"


def cell_samples(model, label: str, nfe: int, temperature: float, args) -> list[dict]:
    """Every seed's samples of one cell (drawn, or read back from --work)."""
    work = args.work / label.replace("/", "_")
    work.mkdir(parents=True, exist_ok=True)
    per_seed = -(-args.samples // len(args.seeds))
    return [r for seed in args.seeds
            for r in draw(model, nfe, temperature, seed, per_seed, args.batch_size,
                          cell_file(args, label, nfe, temperature, f"_seed{seed}.jsonl"), args.sampler,
                          sampler_options(getattr(args, "sampler_option", [])))]


def sampled_entropy(model, label: str, nfe: int, temperature: float, args) -> float:
    """A cell's entropy without the judge: ``evaluate``'s own entropy scorer alone (no reference, no
    bootstrap). The bracket walks on this, so only the two cells that straddle the target pay for the judge."""
    rec = cached(cell_file(args, label, nfe, temperature), model, args.sampler)
    if rec is None:
        rec = evaluate(model.domain, cell_samples(model, label, nfe, temperature, args), metrics=["entropy"],
                       reference_samples=0, tokenizer=model.tokenizer, bootstrap=0)
    return rec["metrics"]["entropy"]["mean"]


def cell(model, label: str, nfe: int, temperature: float, args, metrics: list[str]) -> dict:
    """The evaluation record of one (model, NFE, T), from --work when an earlier run made it."""
    rec_file = cell_file(args, label, nfe, temperature)
    rec = cached(rec_file, model, args.sampler)
    if rec is not None:
        return rec
    samples = cell_samples(model, label, nfe, temperature, args)
    rec = evaluate(model.domain, samples, judge=args.judge, metrics=metrics, reference_samples=args.reference_samples,
                   tokenizer=model.tokenizer, bootstrap=args.bootstrap, options={"judge_batch_size": 8})
    rec["frontier"] = {"label": label, "nfe": nfe, "temperature": temperature,
                       **sampling_cost(samples)}  # from the records: right also when the samples were read back
    write_result(rec_file, rec)
    return rec


def reported_cell(model, label: str, nfe: int, temperature: float, *, args, metrics: list[str]) -> dict:
    """``cell``, with its point printed as it lands (progress on stderr, one line per cell)."""
    rec = cell(model, label, nfe, temperature, args, metrics)
    p = point_of(rec)
    print(f"{label} @ NFE {nfe}, T {temperature:g}: entropy {p['entropy']:.3f}, Gen PPL {p['gen_ppl']:.1f}"
          + (f", MAUVE {p['mauve']:.3f}" if p.get("mauve") is not None else ""), file=sys.stderr, flush=True)
    return rec


def point_of(rec: dict) -> dict:
    m = rec["metrics"]
    g = m["gen_ppl"]
    point = {"temperature": rec["frontier"]["temperature"], "entropy": m["entropy"]["mean"],
             "entropy_std": m["entropy"]["std"], "gen_ppl": g["pooled"], "gen_ppl_std": g["std"],
             "gen_ppl_ci": [g["ci"]["low"], g["ci"]["high"]] if g.get("ci") else None,
             "rep_4": m.get("rep_4", {}).get("pooled"), "samples": rec["num_samples"], "seeds": rec["seeds"],
             **{k: rec["frontier"].get(k) for k in ("s_per_sample", "rows_evaluated_per_sample")}}
    if "mauve" in m:
        point["mauve"] = m["mauve"]["pooled"]
        point["mauve_ci"] = [m["mauve"]["ci"]["low"], m["mauve"]["ci"]["high"]] if m["mauve"].get("ci") else None
    return point


def fmt(x, spec=".1f"):
    return "–" if x is None else format(x, spec)


def markdown(table: list[dict], curves: dict, header: str, matched_to: dict | None = None) -> str:
    lines = [header, "", "Matched entropy: nearest grid point, and linear interpolation between the two grid points that "
             "bracket the target (– when none do).", "",
             "| model × NFE | target H | nearest T | its H | Gen PPL | MAUVE | interpolated T | Gen PPL | MAUVE |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if matched_to:
        m = matched_to
        lines.append(f"| {m['curve']} (the target) | {m['entropy']:.3f} | 1 | {m['entropy']:.3f} | {m['gen_ppl']:.1f} | "
                     f"{fmt(m.get('mauve'), '.3f')} | 1 | {m['gen_ppl']:.1f} | {fmt(m.get('mauve'), '.3f')} |")
    for row in table:
        n, i = row["nearest"], row["interpolated"] or {}
        lines.append(f"| {row['curve']} | {row['target_entropy']:.3f} | {n['temperature']:g} | {n['entropy']:.3f} | "
                     f"{fmt(n['gen_ppl'])} | {fmt(n.get('mauve'), '.3f')} | {fmt(i.get('temperature'), '.3f')} | "
                     f"{fmt(i.get('gen_ppl'))} | {fmt(i.get('mauve'), '.3f')} |")
    lines += ["", "Every grid point (Gen PPL pooled over samples with its 95 % bootstrap CI; entropy mean ± std over seeds):",
              "", "| model × NFE | T | entropy | Gen PPL | 95 % CI | MAUVE | rep-4 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, points in curves.items():
        for p in sorted(points, key=lambda p: p["temperature"]):
            ci = f"{p['gen_ppl_ci'][0]:.1f}–{p['gen_ppl_ci'][1]:.1f}" if p["gen_ppl_ci"] else "–"
            lines.append(f"| {name} | {p['temperature']:g} | {p['entropy']:.3f} ± {p['entropy_std'] or 0:.3f} | "
                         f"{p['gen_ppl']:.1f} | {ci} | {fmt(p.get('mauve'), '.3f')} | {fmt(p['rep_4'], '.3f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    from didi_seq.sampling.generate import load_model

    args = parse_args(argv)
    if args.labels and len(args.labels) != len(args.checkpoints):
        raise SystemExit("error: --labels needs one label per checkpoint")
    if args.match and args.target_entropy is not None:
        raise SystemExit("error: give --match or --target-entropy, not both")
    if args.bracket and not (args.match or args.target_entropy is not None):
        raise SystemExit("error: --bracket needs a target: --match CHECKPOINT@NFE or --target-entropy H")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    dom = get_domain(args.domain)
    metrics = ["gen_ppl", "entropy", "rep_2", "rep_3", "rep_4"] + ([] if args.no_mauve else ["mauve"])
    matched_to, target = None, args.target_entropy
    if args.match:
        checkpoint, nfe = parse_match(args.match)
        model = load_model(dom, checkpoint)
        label = args.match_label or model.adapter.provenance.id or checkpoint
        rec = cell(model, label, nfe, 1.0, argparse.Namespace(**{**vars(args), "sampler": "ancestral", "sampler_option": []}),
                   metrics)
        matched_to = {"curve": f"{label} @ NFE {nfe}", "temperature": 1.0, **point_of(rec)}
        target = matched_to["entropy"]
        print(f"target entropy {target:.3f}: {matched_to['curve']} at T = 1 (Gen PPL {matched_to['gen_ppl']:.1f})",
              file=sys.stderr, flush=True)
    curves, records, reference = {}, [], None
    for k, checkpoint in enumerate(args.checkpoints):
        model = load_model(dom, checkpoint)
        label = args.labels[k] if args.labels else model.adapter.provenance.id or checkpoint
        for nfe in sorted(args.nfe):
            name = f"{label} @ NFE {nfe}"
            at = functools.partial(reported_cell, model, label, nfe, args=args, metrics=metrics)
            if args.bracket:  # walk on the judge-free entropy; judge the last two points (the straddling pair)
                walked = bracket(args.temperatures, target, functools.partial(sampled_entropy, model, label, nfe, args=args))
                temperatures = walked[-2:]
            else:
                temperatures = args.temperatures
            for temperature in sorted(temperatures):
                rec = at(temperature)
                records.append(rec)
                curves.setdefault(name, []).append(point_of(rec))
                reference = reference or rec["reference"]
    if target is None:
        target = reference["values"]["entropy"]
    table = [{"curve": name, **matched_entropy(points, target)} for name, points in curves.items()]
    judge = records[0]["scorers"]["gen_ppl"]["judge"]
    grid = ", ".join(f"{t:g}" for t in sorted(args.temperatures))
    sampler = " ".join([args.sampler, *args.sampler_option])
    header = (f"Gen PPL–entropy frontier ({args.domain}): {sampler} sampler, T ∈ {{{grid}}}, "
              f"{args.samples} samples over seeds {args.seeds} per cell; judge {judge['id']} (revision "
              f"{str(judge['revision'])[:19]}); reference: {reference['num_blocks']} real validation blocks "
              f"(entropy {reference['values']['entropy']:.3f}, Gen PPL {reference['values']['gen_ppl']:.1f}); didi-seq {__version__}")
    if matched_to:
        header += f"; target entropy: {matched_to['curve']} at T = 1"
    text = markdown(table, curves, header, matched_to)
    print(text)
    out = {"benchmark": "frontier", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "protocol": "arXiv 2610.06648 matched entropy (yandex-research/dlm-mmd mmd/owt_pareto.py): logits / T at every "
                       "ancestral step; nearest grid point and linear interpolation in entropy",
           "target_entropy": target, "matched_to": matched_to, "bracket": args.bracket,
           "temperatures": sorted(args.temperatures), "matched": table, "curves": curves,
           "reference": reference, "threads": args.threads, "machine": platform.platform(), "torch": torch.__version__,
           "didi_seq_version": __version__, "wall_clock_s": round(time.perf_counter() - t0, 1), "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), out)
    args.out.with_suffix(".md").write_text(text)
    plot_frontier(curves, args.out.with_suffix(".png"), target, reference_point=matched_to,
                  title=f"Gen PPL and MAUVE vs entropy across T ({judge['id'].split(' ')[0].split('/')[-1]} judge"
                        + ("" if sampler == "ancestral" else f", {sampler} sampler") + ")")
    print(f"wrote {args.out}.json/.md/.png", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
