"""How much does the ancestral sampler cost on top of the network it drives?

For each (NFE, batch) this times three things on CPU with ``time.perf_counter``:

* ``forward``  – NFE bare ``adapter.log_probs`` calls on a full [batch, L] batch (inputs
  masked at each step's level, 1 − α(t_k), so the SUBS carry-over costs what it does
  in the sampler): the network alone, no sampler logic;
* ``no-cache`` – ``ancestral_sample`` with ``cache=False``, which calls the network once
  per step (fewer only if every row is already unmasked; the calls and rows it
  really made are reported). ``overhead = no-cache / forward − 1``; target ≤ 10 %;
* ``cache``    – the default sampler with the per-sequence cache (time-agnostic teachers
  only), with its network calls, rows evaluated and rows per sequence.

Why: the sampler's draws are fp64 and only where tokens are revealed, so its logic
should be a rounding error next to the network; and the cache should bound real
network work by the sequence length however large the NFE. One warm-up call precedes
each timing; with --repeats > 1 the minimum is kept (least disturbed by other load).

    python benchmarks/sampler_overhead.py --checkpoint /tmp/tinyrun --quick
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from didi_seq.loading import load_teacher
from didi_seq.plugins import get_domain
from didi_seq.sampling import SamplerConfig, ancestral_sample, time_grid

SEED = 0


def best_of(repeats: int, fn) -> tuple[float, object]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def step_inputs(adapter, nfe: int, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x_t, t) per step: random tokens masked with probability 1 − α(t_k), fixed seed."""
    spec, gen = adapter.spec, torch.Generator().manual_seed(SEED)
    tokens = torch.randint(spec.vocab_size, (batch, length), generator=gen)
    tokens[tokens == spec.mask_id] = (spec.mask_id + 1) % spec.vocab_size
    u = torch.rand((batch, length), generator=gen, dtype=torch.float64)
    steps = []
    for t in time_grid(nfe)[:-1]:
        x = torch.where(u < float(adapter.schedule.mask_prob(t)), spec.mask_id, tokens)
        steps.append((x, torch.full((batch,), float(t))))
    return steps


def forwards(adapter, steps) -> None:
    for x, t in steps:  # each output is dropped at once, as the sampler drops its own
        adapter.log_probs(x, t)


def sample(adapter, nfe: int, batch: int, length: int, cache: bool):
    cfg = SamplerConfig(nfe=nfe, cache=cache, length=length)
    return ancestral_sample(adapter, batch, cfg, torch.Generator().manual_seed(SEED))


def measure(adapter, nfe: int, batch: int, length: int, repeats: int) -> dict:
    steps = step_inputs(adapter, nfe, batch, length)
    fwd_s, _ = best_of(repeats, lambda: forwards(adapter, steps))
    del steps
    nc_s, nc = best_of(repeats, lambda: sample(adapter, nfe, batch, length, cache=False))
    c_s, c = best_of(repeats, lambda: sample(adapter, nfe, batch, length, cache=True))
    return {
        "nfe": nfe, "batch": batch, "forward_s": fwd_s,
        "nocache_s": nc_s, "overhead_pct": 100 * (nc_s / fwd_s - 1),
        "nocache_calls": nc.network_calls, "nocache_rows": nc.rows_evaluated,
        "cache_s": c_s, "cache_calls": c.network_calls, "cache_rows": c.rows_evaluated,
        "cache_calls_per_seq": c.rows_evaluated / batch, "cache_speedup": nc_s / c_s,
        "same_samples": bool(torch.equal(nc.tokens, c.tokens)),
    }


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ["NFE", "batch", "forward s", "no-cache s", "overhead", "nc calls/rows", "cache s",
            "cache calls", "cache rows", "calls/seq", "speed-up", "same"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["nfe"]), str(r["batch"]), f"{r['forward_s']:.3f}", f"{r['nocache_s']:.3f}",
                      f"{r['overhead_pct']:+.1f}%", f"{r['nocache_calls']}/{r['nocache_rows']}",
                      f"{r['cache_s']:.3f}", str(r["cache_calls"]), str(r["cache_rows"]),
                      f"{r['cache_calls_per_seq']:.1f}", f"{r['cache_speedup']:.1f}x",
                      "yes" if r["same_samples"] else "NO")
    Console(width=160).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="teacher", help="'teacher' (embedded) or a checkpoint/run dir")
    ap.add_argument("--domain", default="text")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/sampler_overhead.json"))
    ap.add_argument("--quick", action="store_true", help="NFE 16 and 64 only (smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nfes = [16, 64] if args.quick else args.nfe

    adapter, _ = load_teacher(args.checkpoint, get_domain(args.domain))
    length = adapter.spec.max_length
    ckpt_id = adapter.provenance.get("id", "?")
    rows = [measure(adapter, n, b, length, args.repeats) for n in nfes for b in args.batch]
    print_table(rows, f"sampler overhead: {ckpt_id}, L={length}, threads={args.threads}, torch {torch.__version__}")

    # Real network work of the cached teacher at NFE 1024, one sequence of the shipped length.
    at_1024 = next((r for r in rows if r["nfe"] == 1024 and r["batch"] == 1), None)
    calls_1024 = at_1024["cache_calls"] if at_1024 else sample(adapter, 1024, 1, length, True).network_calls
    print(f"cached teacher, NFE 1024, batch 1, L={length}: {calls_1024} real network calls "
          f"({calls_1024 / 1024:.1%} of the NFE; at most L={length})")
    if any(r["overhead_pct"] > 10 for r in rows):
        print("WARNING: sampler overhead above the 10 % target in at least one setting")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": args.threads, "repeats": args.repeats,
        "checkpoint": args.checkpoint, "checkpoint_id": ckpt_id, "domain": args.domain,
        "length": length, "time_conditioned": adapter.spec.time_conditioned,
        "cached_calls_nfe1024_batch1": calls_1024, "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
