"""Is bf16 autocast a win on *this* CPU? Forward and forward+backward of the embedded text teacher.

didi-seq runs the teacher's trunk under bf16 autocast on CPUs (sampling) and DiDi-Instruct trains
under it by default. That pays off only where the CPU has native bf16 (AVX512-BF16 / AMX); on
others torch emulates it. This times both on one batch (fp32 vs bf16 autocast, interleaved, the
minimum of --repeats kept) and records the CPU capability torch reports, so the choice can be
made per machine.

    python benchmarks/bf16_cpu.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/bf16_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    adapter, _ = load_teacher("teacher", get_domain("text"))
    model = adapter.model
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, adapter.spec.vocab_size - 1, (args.batch, adapter.spec.max_length), generator=gen)
    t = torch.full((args.batch,), 0.5)

    def forward(bf16: bool) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x, t)

    def train_step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, t)
        (out if torch.is_tensor(out) else out[0]).float().logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)

    rows = []
    for name, fn in (("forward", forward), ("forward+backward", train_step)):
        fn(False), fn(True)  # warm-up
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for bf16 in (False, True):
                times[bf16].append(timed(lambda fn=fn, bf16=bf16: fn(bf16)))
        fp32, bf16 = min(times[False]), min(times[True])
        rows.append({"pass": name, "fp32_s": fp32, "bf16_s": bf16, "bf16_over_fp32": bf16 / fp32})
    result = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "processor": platform.processor(),
              "threads": args.threads, "batch": args.batch, "length": adapter.spec.max_length,
              "model": adapter.provenance.id, "repeats": args.repeats, "rows": rows}
    lines = [f"bf16 autocast vs fp32, {result['model']}, batch {args.batch} x {result['length']}, "
             f"{args.threads} thread(s), torch {torch.__version__}, CPU capability {result['cpu_capability']}", "",
             "| pass | fp32 (s) | bf16 autocast (s) | bf16 / fp32 |", "|---|---:|---:|---:|"]
    lines += [f"| {r['pass']} | {r['fp32_s']:.3f} | {r['bf16_s']:.3f} | {r['bf16_over_fp32']:.2f}x |" for r in rows]
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
