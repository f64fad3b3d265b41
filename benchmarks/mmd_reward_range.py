"""How far can the representation-space MMD reward move on a teacher? (diagnosis for docs/results.md, round 3)

The reward r (didi_seq.distill.mmd.group_rewards) of fills of the masked set of the same noised training
rows, drawn from: the data itself (x0: the ceiling), the teacher's one-step fill at T = 0.5 / 1 / 1.5,
uniform random tokens (the floor), and the teacher's own K-step ancestral fill from z_t (what few-step
sampling loses). If the K-step fill barely beats the one-step one compared with the spread of r across
groups, a policy gradient on r has little to learn from. Prints a table; writes --out.{json,md}.

    python benchmarks/mmd_reward_range.py --rows 64 --out benchmarks/results/mmd_reward_range
"""

import argparse
import json
from pathlib import Path

import torch

from didi_seq.distill.method import corpus_rows
from didi_seq.distill.mmd import draw_fills, features_of_fills, group_rewards, median_alpha
from didi_seq.distill.noised_data import noised_rows
from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import AncestralSampler, SamplerConfig
from didi_seq.training.distributed import RowNoise


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="text")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--feature-block", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="*", default=[1, 4, 32], help="K of the teacher's K-step fills")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    domain = get_domain(args.domain)
    adapter, tok = load_teacher(args.teacher, domain)
    data, _ = corpus_rows(domain, tok, None, adapter.spec.max_length)
    g = torch.Generator().manual_seed(args.seed)
    n = args.rows
    x0 = torch.as_tensor(data[torch.randint(len(data), (n,), generator=g)])
    feats = adapter.trunk_features(args.feature_block, False)
    alpha = median_alpha(feats(x0[:8]), torch.ones_like(x0[:8], dtype=torch.bool))  # as MMDTrainer: 8 rows
    t, z = noised_rows(x0, None, adapter.schedule, adapter.spec.mask_id, g, RowNoise(g, n), 1e-3)
    masked = z == adapter.spec.mask_id
    with torch.no_grad():
        lp = adapter.denoiser(adapter.model, False)(z, masked, t)

    def reward(fills: torch.Tensor) -> torch.Tensor:  # fills [N, G=4, B=2, L] → r [N', G] of rows with |S| ≥ 2
        real, fake = features_of_fills(feats, x0, fills)
        r, active = group_rewards(real, fake, masked, alpha)
        return r[active]

    def one_step(log_probs: torch.Tensor) -> torch.Tensor:
        return draw_fills(log_probs, x0, masked, 4, 2, torch.Generator().manual_seed(args.seed + 1))

    def k_step(k: int) -> torch.Tensor:
        runs = [AncestralSampler().sample(adapter, z.clone(), SamplerConfig(nfe=k), torch.Generator().manual_seed(100 + i)).tokens
                for i in range(8)]
        return torch.stack(runs, 1).view(n, 4, 2, -1)

    cells = {"data itself (x0)": reward(x0[:, None, None].expand(n, 4, 2, x0.shape[1]).clone())}
    for temp in (0.5, 1.0, 1.5):
        cells[f"teacher one-step draw, T = {temp}"] = reward(one_step(torch.log_softmax(lp / temp, -1)))
    cells["uniform random tokens"] = reward(one_step(torch.log_softmax(torch.zeros_like(lp), -1)))
    for k in args.steps:
        cells[f"teacher {k}-step ancestral fill"] = reward(k_step(k))
    base = cells["teacher one-step draw, T = 1.0"]
    rows = [{"fills": name, "mean_r": r.mean().item(), "minus_teacher": (r - base).mean().item(),
             "sd_over_groups": r.std(-1).mean().item()} for name, r in cells.items()]
    head = (f"MMD reward range ({args.domain}, teacher {args.teacher}): {base.shape[0]} noised rows, G = 4 × B = 2, "
            f"α = {alpha:.3g} (median heuristic), features after block {args.feature_block}, seed {args.seed}")
    lines = [head, "", "| fills | mean r | r − teacher one-step | sd over groups |", "|---|---:|---:|---:|"]
    lines += [f"| {r['fills']} | {r['mean_r']:.4f} | {r['minus_teacher']:+.4f} | {r['sd_over_groups']:.4f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    result = {"alpha": alpha, "rows": base.shape[0], "cells": rows}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
