"""Can the real 169M MDLM teacher (and a student of its shape) run on a CPU?

A randomly initialised DiT of the exact published shape (V = 50258, L = 1024, H = 768,
12 blocks, 12 heads, cond 128: 169,627,218 parameters counting MDLM's LayerNorm weights;
docs/machine-notes.md §2's 169,608,018 leaves those 19,200 out) behind the same ``NativeTeacher``
every MDLM-family checkpoint loads into (bf16 autocast for trunk and head, fp32 logits,
log-probs only at masked positions). It times, with ``time.perf_counter``:

* ``forward``: one full-logits call (``adapter.logits``, all L positions) and one
  sampler-style call (``masked_log_probs`` with every position masked);
* ``sample``: one ``--nfe``-step ancestral sample of one sequence (the target: NFE 16 at
  L = 1024 in ≤ 30 s on 2 cores), with its real network calls;
* ``projected``: the time of a ``--project-nfe``-step cached teacher sample. The exact
  sampler's reveal process is replayed without the network (fp64, same seed) to get, for
  every real network call, the number of masked positions; each call is then charged
  ``a + b · masked fraction`` with a and b fitted on calls timed at masked fractions
  1, 0.5 and 0.1. Random weights do not change the cost of a forward, only the samples.

Weights are random, so the samples are noise; the point is the clock. Not run in CI.

    python benchmarks/mdlm169m_cpu.py                       # the real measurement (minutes)
    python benchmarks/mdlm169m_cpu.py --length 64 --nfe 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import NativeTeacher, TeacherSpec
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, time_grid
from didi_seq.sampling.generate import Model, generate

VOCAB, MASK = 50258, 50257
SEED = 0


def build(args) -> NativeTeacher:
    torch.manual_seed(SEED)
    cfg = DiTConfig(vocab_size=VOCAB, length=args.length, hidden=args.hidden, layers=args.layers, heads=args.heads,
                    cond_dim=128)
    model = DiT(cfg)
    with torch.no_grad():  # MDLM zero-initialises the head; give it values so softmax/draws do real work
        model.output_layer.linear.weight.normal_(0.0, 0.02)
    spec = TeacherSpec(vocab_size=VOCAB, mask_id=MASK, max_length=args.length)
    return NativeTeacher(model, spec, LogLinearSchedule(), {"id": "random-169m"}, bf16=not args.fp32)


def clock(fn, repeats: int) -> float:
    """Minimum over ``repeats`` (the run least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def call_profile(nfe: int, length: int) -> list[int]:
    """Masked positions at each real network call of the cached exact sampler (batch 1),
    replaying its reveal draws without the network (a time-agnostic teacher is re-run
    only after a step that revealed something)."""
    gen = torch.Generator().manual_seed(SEED)
    schedule, grid = LogLinearSchedule(), time_grid(nfe)
    masked, stale, calls = torch.ones(length, dtype=torch.bool), True, []
    for k in range(nfe):
        if not masked.any():
            break
        if stale:
            calls.append(int(masked.sum()))
        a_t, a_s = schedule.alpha(grid[k]), schedule.alpha(grid[k + 1])
        reveal = masked & (torch.rand(length, dtype=torch.float64, generator=gen) < float((a_s - a_t) / (1 - a_t)))
        masked &= ~reveal
        stale = bool(reveal.any())
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--project-nfe", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast (for comparison)")
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/mdlm169m_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = build(args)
    n_params = sum(p.numel() for p in adapter.model.parameters())
    L = args.length
    x_all = torch.full((1, L), MASK)
    t = torch.ones(1)

    def masked_call(fraction: float):
        x = torch.randint(0, MASK, (1, L), generator=torch.Generator().manual_seed(1))
        x[0, : max(1, round(fraction * L))] = MASK
        return lambda: adapter.masked_log_probs(x, t, x == MASK)

    adapter.logits(x_all, t)  # warm-up (oneDNN kernels, allocations)
    full_s = clock(lambda: adapter.logits(x_all, t), args.repeats)
    fracs = (1.0, 0.5, 0.1)
    call_s = {f: clock(masked_call(f), args.repeats) for f in fracs}
    # least squares: seconds = a + b * masked fraction
    n = len(fracs)
    mx, my = sum(fracs) / n, sum(call_s.values()) / n
    b = sum((f - mx) * (call_s[f] - my) for f in fracs) / sum((f - mx) ** 2 for f in fracs)
    a = my - b * mx

    text = get_domain("text")
    model = Model(text, adapter, text.load_tokenizer("gpt2"))  # GPT-2 ids, as MDLM's 169M model
    sample_s, result = float("inf"), None
    for _ in range(args.repeats):
        r = generate(model, SamplerConfig(nfe=args.nfe), num_samples=1, seed=SEED, batch_size=1).result
        if r.wall_clock_s < sample_s:
            sample_s, result = r.wall_clock_s, r
    profile = call_profile(args.project_nfe, L)
    projected_s = sum(a + b * m / L for m in profile)

    rows = [
        ("parameters", f"{n_params:,}"),
        (f"forward, full logits [1, {L}, {VOCAB}]", f"{full_s:.3f} s"),
        *[(f"forward, log-probs at {f:.0%} masked", f"{call_s[f]:.3f} s") for f in fracs],
        (f"sample: NFE {args.nfe}, 1 x {L} tokens", f"{sample_s:.2f} s ({result.network_calls} network calls)"),
        (f"projected: NFE {args.project_nfe}, cached", f"{projected_s:.1f} s ({len(profile)} network calls)"),
    ]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"169M-shape DiT on CPU: {args.threads} threads, {'fp32' if args.fp32 else 'bf16 autocast'}, "
                        f"torch {torch.__version__}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)
    if L == 1024 and args.nfe == 16:
        print(f"target (NFE 16, L 1024, <= 30 s): {'met' if sample_s <= 30 else 'NOT met'}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
        "threads": args.threads, "repeats": args.repeats, "dtype": "fp32" if args.fp32 else "bf16-autocast",
        "shape": {"vocab": VOCAB, "length": L, "hidden": args.hidden, "layers": args.layers, "heads": args.heads},
        "parameters": n_params, "forward_full_logits_s": full_s,
        "forward_masked_log_probs_s": {str(f): s for f, s in call_s.items()}, "cost_model_s": {"a": a, "b": b},
        "sample": {"nfe": args.nfe, "wall_clock_s": sample_s, "network_calls": result.network_calls},
        "projected": {"nfe": args.project_nfe, "network_calls": len(profile), "wall_clock_s": projected_s},
    }, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
