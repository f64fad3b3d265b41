"""What can an SDTT round teach a factorised student? (diagnosis for docs/results.md)

SDTT (arXiv 2410.21035) pulls the student's one-step x0 log-probs at z_t towards a target drawn by
two teacher steps: at a position the first step reveals, the teacher's one-step log-probs; at any
other, the teacher's log-probs given the intermediate state z_mid, which is random. Over many
draws of that target, p_1, …, p_M, the loss a student q can reach splits into a part it can remove
and a part no single q can:

* reverse KL (the default): E_m KL(q ‖ p_m) = KL(q ‖ g) − log Z, with g ∝ exp(E_m log p_m) the
  targets' normalised geometric mean. The student starts as the teacher's one-step prediction
  p_one, so a round can lower its loss by at most ``KL(p_one ‖ g)`` (``reducible``);
* forward KL: E_m KL(p_m ‖ q) is smallest at the arithmetic mean m̄ (the exact two-step marginal),
  so at most ``KL(m̄ ‖ p_one)`` is reducible and E_m KL(p_m ‖ m̄) is not.

A consistent teacher (its one-step prediction already equals its two-step marginal m̄) leaves nothing
for the forward loss to learn; the reverse loss can still move q towards g, which is not m̄: what it
learns then is a distortion of the two-step marginal, not the marginal. Entropies of p_one, m̄ and g
show how the optima differ from the start in spread.
Means over masked positions with 95 % bootstrap CIs over rows
(M draws estimate m̄ and g: both KLs carry an O(1/M) bias, so the table gives two M).

    python benchmarks/sdtt_target_gap.py --nfe 32 16 8 --draws 4 16 --rows 32 --out benchmarks/results/sdtt_target_gap
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from joint_gap import noised_chunks, per_token, teacher_and_corpus  # noqa: E402


def delta_for(student_nfe: int, teacher_steps: int = 2) -> float:
    """Δ of the SDTT round whose student takes ``student_nfe`` steps, each of ``teacher_steps`` teacher steps."""
    return 1.0 / (teacher_steps * student_nfe)


def kl_rows(lp_a: torch.Tensor, lp_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) over the last axis (log-probs, −∞ allowed where a is 0)."""
    pa = lp_a.exp()
    return (pa * torch.where(pa > 0, lp_a - lp_b, torch.zeros_like(lp_a))).sum(-1)


def entropy_rows(lp: torch.Tensor) -> torch.Tensor:
    return -(lp.exp() * torch.where(lp > -math.inf, lp, torch.zeros_like(lp))).sum(-1)


def target_decomposition(fn, z_t: torch.Tensor, t: torch.Tensor, delta: float, draws: int, schedule, mask_id: int,
                         generator: torch.Generator, teacher_steps: int = 2, t_min: float = 1e-3) -> dict:
    """Per masked position of z_t ([P], row-major): the reducible and irreducible parts of SDTT's reverse
    and forward losses over ``draws`` targets, and the entropies of p_one, m̄ and g (``fn``: a Denoiser)."""
    from didi_seq.distill.sdtt import teacher_target

    with torch.no_grad():
        masked = z_t == mask_id
        one = fn(z_t, masked, t).double()
        # every row repeated ``draws`` times, draw-major: one rollout gives the M targets of each row
        many = teacher_target(fn, z_t.repeat(draws, 1), t.repeat(draws), delta, teacher_steps, schedule, mask_id,
                              generator, t_min).double()
        targets = many.view(draws, *one.shape)
        arith = torch.logsumexp(targets, 0) - math.log(draws)
        geo = torch.log_softmax(targets.mean(0), -1)
        return {
            "reverse_start": kl_rows(one, targets).mean(0),
            "reverse_optimum": kl_rows(geo, targets).mean(0),
            "reverse_reducible": kl_rows(one, geo),
            "forward_start": kl_rows(targets, one).mean(0),
            "forward_irreducible": kl_rows(targets, arith).mean(0),
            "forward_reducible": kl_rows(arith, one),
            "entropy_one": entropy_rows(one),
            "entropy_marginal": entropy_rows(arith),
            "entropy_geometric": entropy_rows(geo),
            "row": masked.nonzero()[:, 0],
        }


COLUMNS = ("reverse_start", "reverse_reducible", "forward_start", "forward_reducible", "forward_irreducible",
           "entropy_one", "entropy_marginal", "entropy_geometric")


def summarise(parts: list[dict], rows: int, generator: torch.Generator) -> dict:
    """Mean per masked position of each column over all parts (rows already global), CI over rows."""
    row_index = torch.cat([p["row"] for p in parts])
    count = torch.bincount(row_index, minlength=rows).double()
    out = {}
    for key in COLUMNS:
        per_row = torch.zeros(rows, dtype=torch.float64).index_add(0, row_index, torch.cat([p[key] for p in parts]))
        out[key] = per_token(per_row, count, generator)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="text")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--nfe", type=int, nargs="+", default=[32, 16, 8],
                    help="the student's steps (Δ = 1/(2·NFE), as in the round that trains it)")
    ap.add_argument("--draws", type=int, nargs="+", default=[4, 16], help="M: targets drawn per noised row")
    ap.add_argument("--rows", type=int, default=32, help="noised training rows per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--chunk", type=int, default=2, help="rows per forward pass (× draws)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    adapter, fn, data, meta = teacher_and_corpus(args.domain, args.teacher)
    results = []
    for nfe in args.nfe:
        for draws in args.draws:
            parts = []
            for seed in args.seeds:
                for start, z, t, g in noised_chunks(adapter, data, args.rows, seed, args.chunk):
                    part = target_decomposition(fn, z, t, delta_for(nfe), draws, adapter.schedule, adapter.spec.mask_id, g)
                    part["row"] = part["row"] + start + seed * args.rows
                    parts.append(part)
            total_rows = args.rows * len(args.seeds)
            row = {"nfe": nfe, "delta": delta_for(nfe), "draws": draws, "rows": total_rows,
                   "positions": sum(len(p["row"]) for p in parts),
                   **summarise(parts, total_rows, torch.Generator().manual_seed(1234))}
            results.append(row)
            print(f"NFE {nfe:3d} M {draws:3d}: reverse {row['reverse_start']['value']:.4f} (reducible "
                  f"{row['reverse_reducible']['value']:.4f})  forward {row['forward_start']['value']:.4f} (reducible "
                  f"{row['forward_reducible']['value']:.4f})  H one/m̄/g {row['entropy_one']['value']:.3f}/"
                  f"{row['entropy_marginal']['value']:.3f}/{row['entropy_geometric']['value']:.3f}", file=sys.stderr, flush=True)
    used = sys.argv[1:] if argv is None else argv
    record = {"teacher": args.teacher, "domain": args.domain, "corpus": meta["corpus"], "seeds": args.seeds,
              "rows_per_seed": args.rows, "command": "python benchmarks/sdtt_target_gap.py " + " ".join(used),
              "results": results}
    write(record, args.out)
    return record


def extrapolate(small: float, m_small: int, large: float, m_large: int) -> float:
    """The M → ∞ value of an estimate whose bias falls as 1/M, from two M (Richardson)."""
    return (m_large * large - m_small * small) / (m_large - m_small)


def extrapolated_rows(results: list[dict]) -> list[dict]:
    """Per student NFE, both reducible parts at M → ∞ from its smallest and largest M."""
    out = []
    for nfe in dict.fromkeys(r["nfe"] for r in results):
        rs = sorted((r for r in results if r["nfe"] == nfe), key=lambda r: r["draws"])
        if len(rs) < 2:
            continue
        lo, hi = rs[0], rs[-1]
        out.append({"nfe": nfe, "draws": [lo["draws"], hi["draws"]], "reverse_start": hi["reverse_start"]["value"],
                    **{key: extrapolate(lo[key]["value"], lo["draws"], hi[key]["value"], hi["draws"])
                       for key in ("reverse_reducible", "forward_reducible")}})
    return out


def cell(v: dict, digits: int = 4) -> str:
    return f"{v['value']:.{digits}f} [{v['ci'][0]:.{digits}f}–{v['ci'][1]:.{digits}f}]"


def write(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["What an SDTT round can teach a factorised student: its loss at the start (the student = the teacher's "
             "one-step prediction) and the part of it any student could remove, over M two-step targets per noised row "
             f"(teacher `{record['teacher']}`, {record['rows_per_seed']} rows × seeds {record['seeds']}; nats per masked "
             "position, 95 % bootstrap CI over rows; `benchmarks/sdtt_target_gap.py`).", "",
             "| student NFE | M | reverse loss | reducible (KL(p_one ‖ g)) | forward loss | reducible (KL(m̄ ‖ p_one)) "
             "| H(p_one) | H(m̄) | H(g) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["results"]:
        lines.append(f"| {r['nfe']} | {r['draws']} | {cell(r['reverse_start'])} | {cell(r['reverse_reducible'])} | "
                     f"{cell(r['forward_start'])} | {cell(r['forward_reducible'])} | {r['entropy_one']['value']:.3f} | "
                     f"{r['entropy_marginal']['value']:.3f} | {r['entropy_geometric']['value']:.3f} |")
    extra = extrapolated_rows(record["results"])
    if extra:
        lines += ["", "Both reducible parts at M → ∞, assuming their bias falls as 1/M (Richardson, from the smallest and "
                  "largest M), and the share of the reverse loss a round could remove:", "",
                  "| student NFE | reverse loss | reducible, M → ∞ | share | forward reducible, M → ∞ |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {e['nfe']} | {e['reverse_start']:.4f} | {e['reverse_reducible']:.4f} | "
                  f"{e['reverse_reducible'] / e['reverse_start']:.1%} | {e['forward_reducible']:.4f} |" for e in extra]
    record["extrapolated"] = extra
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
