"""How much does the ancestral sampler cost on top of the network it drives?

For each (NFE, batch) this times three things on CPU with ``time.perf_counter``:

* ``forward``  – NFE bare ``adapter.masked_log_probs`` calls on a full [batch, L] batch (inputs
  masked at each step's level, 1 − α(t_k), log-probs at the masked positions as the
  sampler asks for them): the network alone, no sampler logic;
* ``no-cache`` – ``ancestral_sample`` with ``cache=False``: one network call per step, but
  rows with nothing left to unmask are left out and a step with no mask at all is
  skipped, so the calls and rows it really made are reported next to NFE and NFE·batch.
  ``overhead = no-cache / forward − 1``; target ≤ 10 %.
  ``logic`` is the same question asked inside one run, immune to load drifting between
  runs: time spent outside ``masked_log_probs`` over time spent inside it;
* ``cache``    – the default sampler with the per-sequence cache (time-agnostic teachers
  only), with its network calls, rows evaluated and rows per sequence.

Why: the sampler's draws are fp64 and only where tokens are revealed, so its logic
should be a rounding error next to the network; and the cache should bound real
network work by the sequence length however large the NFE. Each setting starts with a
warm-up (one forward, one sampler run); --repeats are interleaved (forward, no-cache,
cache, …) and the minimum of each is kept, the run least disturbed by other load.

    python benchmarks/sampler_overhead.py --checkpoint /tmp/tinyrun --quick
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, time_grid
from didi_seq.sampling.generate import Model, generate, load_model

SEED = 0


class Timed:
    """The adapter as the sampler sees it, clocking the time spent inside the network."""

    def __init__(self, adapter):
        self.adapter, self.spec, self.schedule, self.net_s = adapter, adapter.spec, adapter.schedule, 0.0
        self.device, self.provenance = adapter.device, adapter.provenance

    def masked_log_probs(self, x, t, positions):
        start = time.perf_counter()
        out = self.adapter.masked_log_probs(x, t, positions)
        self.net_s += time.perf_counter() - start
        return out


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
        adapter.masked_log_probs(x, t, x == adapter.spec.mask_id)


def measure(model, nfe: int, batch: int, length: int, repeats: int) -> dict:
    """Min over ``repeats`` of each timing, interleaved so all three see the same load."""
    adapter = model.adapter
    steps, timed = step_inputs(adapter, nfe, batch, length), Timed(adapter)
    timed_model = Model(model.domain, timed, model.tokenizer)

    def run(cache: bool):
        timed.net_s = 0.0
        return generate(timed_model, SamplerConfig(nfe=nfe, cache=cache, length=length), num_samples=batch, seed=SEED,
                        batch_size=batch).result

    def clock(fn):
        """(result, seconds): a sampler run reports its own clock (records are built outside it)."""
        start = time.perf_counter()
        out = fn()
        return out, getattr(out, "wall_clock_s", time.perf_counter() - start)

    forwards(adapter, steps[:1])  # warm-up
    run(False)
    best = {"forward_s": [], "nocache_s": [], "logic_pct": [], "cache_s": []}
    for _ in range(repeats):
        best["forward_s"].append(clock(lambda: forwards(adapter, steps))[1])
        nc, nc_s = clock(lambda: run(False))
        best["nocache_s"].append(nc_s)
        best["logic_pct"].append(100 * (nc_s / timed.net_s - 1))
        c, c_s = clock(lambda: run(True))
        best["cache_s"].append(c_s)
    r = {"nfe": nfe, "batch": batch, **{k: min(v) for k, v in best.items()}}
    return {**r, "overhead_pct": 100 * (r["nocache_s"] / r["forward_s"] - 1),
            "nocache_calls": nc.network_calls, "nocache_rows": nc.rows_evaluated,
            "cache_calls": c.network_calls, "cache_rows": c.rows_evaluated,
            "cache_calls_per_seq": c.rows_evaluated / batch, "cache_speedup": r["nocache_s"] / r["cache_s"],
            "same_samples": bool(torch.equal(nc.tokens, c.tokens))}


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ["NFE", "batch", "forward s", "no-cache s", "overhead", "logic", "nc calls/rows", "cache s",
            "cache calls", "cache rows", "calls/seq", "speed-up", "same"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["nfe"]), str(r["batch"]), f"{r['forward_s']:.3f}", f"{r['nocache_s']:.3f}",
                      f"{r['overhead_pct']:+.1f}%", f"{r['logic_pct']:.1f}%", f"{r['nocache_calls']}/{r['nocache_rows']}",
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

    model = load_model(get_domain(args.domain), args.checkpoint)
    adapter = model.adapter
    length = adapter.spec.max_length
    ckpt_id = adapter.provenance.id or "?"
    rows = [measure(model, n, b, length, args.repeats) for n in nfes for b in args.batch]
    print_table(rows, f"sampler overhead: {ckpt_id}, L={length}, threads={args.threads}, torch {torch.__version__}")

    # Real network work of the cached teacher at NFE 1024, one sequence of the shipped length.
    calls_1024 = next((r["cache_calls"] for r in rows if r["nfe"] == 1024 and r["batch"] == 1), None)
    if calls_1024 is None:  # not in the grid (e.g. --quick): one untimed cached run for the count
        cfg = SamplerConfig(nfe=1024, cache=True, length=length)
        calls_1024 = generate(model, cfg, num_samples=1, seed=SEED, batch_size=1).result.network_calls
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
