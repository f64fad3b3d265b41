"""How much does one factorised step lose against the teacher's own finer steps? (diagnosis for docs/results.md)

A student step t → s = t − 1/NFE reveals a set R of positions and draws them independently from
p(x0_i | z_t). The teacher covers the same interval in K finer ancestral steps, so the tokens it
reveals late see the ones it revealed early. For z_s drawn by those K teacher steps from noised
training rows, this prints, per revealed token:

* ``one-step NLL``: −Σ_{i∈R} log p(z_s,i | z_t) / |R|, the teacher's factorised one-step prediction;
* ``K-step NLL``: −Σ_k Σ_{i revealed at k} log p(z_s,i | z_{t_k}) / |R|, the same tokens along the path that drew them;
* ``gap`` = one-step − K-step. The K-step value is the log-likelihood of one reveal order only, a lower bound
  on the joint log p(z_s,R | z_t), so the gap is a lower bound on what the tokens of one step share: what a
  correlated student could gain per token and a factorised one (temperature, SDTT's marginals, MMD's
  reshaping) cannot. With K = 1 it is 0 by construction.

95 % CIs by bootstrap over rows. Prints a table; writes --out.{json,md}.

    python benchmarks/joint_gap.py --nfe 8 16 32 --teacher-steps 2 4 8 --rows 64 --out benchmarks/results/joint_gap
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def step_nlls(fn, z_t: torch.Tensor, t: torch.Tensor, nfe: int, teacher_steps: int, schedule, mask_id: int,
              generator: torch.Generator, t_min: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(one-step NLL [N], K-step NLL [N], revealed [N]) summed over the positions the K teacher steps
    reveal from z_t to t − 1/nfe (``fn``: a ``Denoiser``)."""
    from didi_seq.distill.objective import rollout
    from didi_seq.distill.sdtt import teacher_times

    with torch.no_grad():
        times = teacher_times(t, 1.0 / (nfe * teacher_steps), teacher_steps, t_min)
        path = rollout(fn, z_t, times, schedule, mask_id, generator)
        masked = z_t == mask_id
        revealed = masked & (path.x != mask_id)
        lp = fn(z_t, masked, t)
        picked = lp.gather(-1, path.x[masked][:, None]).squeeze(-1)
        picked = torch.where(revealed[masked], picked, torch.zeros_like(picked))
        one = torch.zeros(len(z_t), dtype=picked.dtype).index_add(0, masked.nonzero()[:, 0], picked)
    return -one.double(), -path.log_prob.double(), revealed.sum(-1)


def per_token(nll: torch.Tensor, count: torch.Tensor, generator: torch.Generator, draws: int = 2000) -> dict:
    """Σ nll / Σ count over rows, with a 95 % bootstrap CI (rows resampled)."""
    n = len(nll)
    idx = torch.randint(n, (draws, n), generator=generator)
    boot = nll[idx].sum(-1) / count[idx].sum(-1).clamp_min(1)
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype)).tolist()
    return {"value": float(nll.sum() / count.sum().clamp_min(1)), "ci": [lo, hi]}


def teacher_and_corpus(domain_name: str, teacher: str):
    """The teacher (fp32), its denoiser, and the domain's training rows: what every diagnosis here starts from."""
    from didi_seq.distill.method import corpus_rows
    from didi_seq.models.loading import load_teacher
    from didi_seq.registry.plugins import get_domain

    domain = get_domain(domain_name)
    adapter, tok = load_teacher(teacher, domain, bf16=False)
    data, meta = corpus_rows(domain, tok, None, adapter.spec.max_length)
    return adapter, adapter.denoiser(adapter.model, False), data, meta


def noised_chunks(adapter, data, rows: int, seed: int, chunk: int):
    """``rows`` training rows drawn and noised as distillation does, from one generator seeded ``seed``, in chunks:
    (first row, z_t, t, generator). The caller draws from the same generator between chunks, so order matters."""
    from didi_seq.distill.noised_data import noised_rows
    from didi_seq.training.distributed import RowNoise

    g = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(data[torch.randint(len(data), (rows,), generator=g)])
    t, z = noised_rows(x0, None, adapter.schedule, adapter.spec.mask_id, g, RowNoise(g, rows))
    for start in range(0, rows, chunk):
        sl = slice(start, start + chunk)
        yield start, z[sl], t[sl], g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="text")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32], help="student steps (one step = 1/NFE of time)")
    ap.add_argument("--teacher-steps", type=int, nargs="+", default=[4], help="K: teacher steps per student step")
    ap.add_argument("--rows", type=int, default=96, help="noised training rows per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter, fn, data, meta = teacher_and_corpus(args.domain, args.teacher)
    results = []
    for nfe in args.nfe:
        for k in args.teacher_steps:
            parts = [step_nlls(fn, z, t, nfe, k, adapter.schedule, adapter.spec.mask_id, g)
                     for seed in args.seeds for _, z, t, g in noised_chunks(adapter, data, args.rows, seed, 16)]
            one, many, count = (torch.cat(p) for p in zip(*parts, strict=True))
            g = torch.Generator().manual_seed(1234)
            row = {"nfe": nfe, "teacher_steps": k, "rows": len(one), "revealed_tokens": int(count.sum()),
                   "one_step_nll": per_token(one, count, g), "k_step_nll": per_token(many, count, g),
                   "gap": per_token(one - many, count, g)}
            results.append(row)
            print(f"NFE {nfe:3d} K {k}: one-step {row['one_step_nll']['value']:.4f}  K-step {row['k_step_nll']['value']:.4f}  "
                  f"gap {row['gap']['value']:.4f} [{row['gap']['ci'][0]:.4f}–{row['gap']['ci'][1]:.4f}] nats/token "
                  f"over {row['revealed_tokens']} tokens", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"teacher": args.teacher, "domain": args.domain, "corpus": meta["corpus"], "seeds": args.seeds,
              "rows_per_seed": args.rows, "command": "python benchmarks/joint_gap.py " + " ".join(sys.argv[1:]),
              "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["What one factorised step loses against the teacher's K finer steps over the same interval "
             f"(teacher `{args.teacher}`, {args.rows} noised training rows × seeds {args.seeds}; nats per revealed token, "
             "95 % bootstrap CI over rows; `benchmarks/joint_gap.py`).", "",
             "| NFE | K | tokens | one-step NLL | K-step NLL | gap (≥ shared information) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['nfe']} | {r['teacher_steps']} | {r['revealed_tokens']} | {r['one_step_nll']['value']:.4f} | "
                     f"{r['k_step_nll']['value']:.4f} | {r['gap']['value']:.4f} [{r['gap']['ci'][0]:.4f}–{r['gap']['ci'][1]:.4f}] |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
