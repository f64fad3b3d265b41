"""Plots for benchmark results (matplotlib, imported lazily: ``pip install 'didi-seq[plot]'``)."""

from __future__ import annotations

from pathlib import Path

from .errors import DidiError


def plot_gen_ppl_vs_nfe(series: dict[str, list[dict]], path: Path, reference: dict | None = None,
                        title: str = "Gen PPL vs NFE") -> None:
    """One line per series; points are dicts with nfe, gen_ppl, gen_ppl_std, entropy.

    Entropy is written next to every point because Gen PPL alone can be bought with
    low-temperature sampling (Zheng et al., arXiv 2409.02908). ``reference`` may carry the
    real-data gen_ppl (dashed line) and entropy.
    """
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DidiError("plotting needs matplotlib: pip install 'didi-seq[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        points = sorted(points, key=lambda p: p["nfe"])
        xs, ys = [p["nfe"] for p in points], [p["gen_ppl"] for p in points]
        ax.errorbar(xs, ys, yerr=[p.get("gen_ppl_std") or 0 for p in points], marker="o", capsize=3, label=label)
        for p in points:
            ax.annotate(f"H={p['entropy']:.2f}", (p["nfe"], p["gen_ppl"]), textcoords="offset points",
                        xytext=(4, 6), fontsize=7)
    if reference and reference.get("gen_ppl") is not None:
        ref_h = f", H={reference['entropy']:.2f}" if reference.get("entropy") is not None else ""
        ax.axhline(reference["gen_ppl"], ls="--", c="gray", label=f"real validation text{ref_h}")
    ax.set_xscale("log", base=2)
    ticks = sorted({p["nfe"] for points in series.values() for p in points})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("NFE (network function evaluations = sampling steps)")
    ax.set_ylabel("Gen PPL (judge)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
