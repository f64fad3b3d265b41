"""Plots for benchmark results (matplotlib, imported lazily: ``pip install -e ".[plot]"``).

Readability rules every plot here keeps: no text labels next to points (they overprint when
curves are close; values go on their own axis instead), reference values as lines, titles
wrapped and laid out with the figure (never clipped), and no "vs NFE" plot of a single NFE.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DidiError, install_command


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DidiError(f"plotting needs matplotlib: {install_command('plot')}") from None
    return plt


def _log_y(ax) -> None:
    """Log y axis labelled at 1, 2, 5 × 10^k in plain numbers (a narrow range still gets several labels)."""
    import matplotlib.ticker

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if high / low > 10 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)  # under a decade: denser labels
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _save(fig, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_gen_ppl_vs_nfe(series: dict[str, list[dict]], path: Path, reference: dict | None = None,
                        title: str = "Gen PPL vs NFE", baseline: dict | None = None) -> None:
    """Gen PPL (top) and entropy (bottom) against NFE, one line per series.

    Points are dicts with nfe, gen_ppl, gen_ppl_std, entropy (entropy_std). Entropy has its own
    panel because Gen PPL alone can be bought with low-temperature sampling ("Hacking Generative
    Perplexity", arXiv 2606.08417). ``reference``: real-data gen_ppl / entropy (dashed lines);
    ``baseline``: e.g. {"label": "teacher@1024", "gen_ppl": …, "entropy": …} (dotted lines).
    """
    if max((len(points) for points in series.values()), default=0) < 2:
        raise DidiError("a Gen PPL vs NFE plot needs at least two NFE values in some series; report one NFE as a table")
    plt = _pyplot()
    fig, (ax, ax_h) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True, height_ratios=[3, 2], layout="constrained")
    for label, points in series.items():
        points = sorted(points, key=lambda p: p["nfe"])
        xs = [p["nfe"] for p in points]
        line = ax.errorbar(xs, [p["gen_ppl"] for p in points], yerr=[p.get("gen_ppl_std") or 0 for p in points],
                           marker="o", capsize=3, label=label)
        ax_h.errorbar(xs, [p["entropy"] for p in points], yerr=[p.get("entropy_std") or 0 for p in points], marker="o",
                      capsize=3, color=line[0].get_color())
    for ref, style, name in ((reference, "--", "real validation text"), (baseline, ":", None)):
        if not ref:
            continue
        name = ref.get("label", name)
        if ref.get("gen_ppl") is not None:
            ax.axhline(ref["gen_ppl"], ls=style, c="gray" if style == "--" else "black", label=f"{name} ({ref['gen_ppl']:.1f})")
        if ref.get("entropy") is not None:
            ax_h.axhline(ref["entropy"], ls=style, c="gray" if style == "--" else "black", label=f"{name} ({ref['entropy']:.3f})")
    ax.set_xscale("log", base=2)
    ticks = sorted({p["nfe"] for points in series.values() for p in points})
    ax_h.set_xticks(ticks, [str(t) for t in ticks])
    ax_h.minorticks_off()
    _log_y(ax)
    ax_h.set_xlabel("NFE (network function evaluations = sampling steps)")
    ax.set_ylabel("Gen PPL (judge)")
    ax_h.set_ylabel("unigram entropy (nats)")
    fig.suptitle(title, wrap=True)
    ax.legend(fontsize=8)
    ax_h.legend(fontsize=8)
    for a in (ax, ax_h):
        a.grid(True, which="both", alpha=0.3)
    _save(fig, path)


def _finish_panel(ax, log: bool, xlabel: str, ylabel: str, legend_below: bool = False) -> None:
    """Scale, labels, grid and legend of one Gen PPL (log) or MAUVE panel; a long legend goes below the
    axes, where it cannot hide curves."""
    if log:
        _log_y(ax)
    else:  # MAUVE lives in [0, 1]: a fixed scale keeps plots comparable
        ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if legend_below:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    else:
        ax.legend(fontsize=8)


def plot_matched_vs_nfe(series: dict[str, list[dict]], path: Path, baseline: dict | None = None,
                        title: str = "At matched entropy") -> None:
    """Gen PPL (log) and, when measured, MAUVE at matched entropy against NFE, one line per model;
    ``baseline`` ({"label", "gen_ppl", "mauve"}: the model whose entropy is matched) as a dotted line."""
    if max((len(points) for points in series.values()), default=0) < 2:
        raise DidiError("a plot against NFE needs at least two NFE values in some series; report one NFE as a table")
    plt = _pyplot()
    has_mauve = any(p.get("mauve") is not None for points in series.values() for p in points)
    panels = [("gen_ppl", "Gen PPL at matched entropy", True)] + ([("mauve", "MAUVE at matched entropy", False)]
                                                                  if has_mauve else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False, layout="constrained")
    ticks = sorted({p["nfe"] for points in series.values() for p in points})
    for ax, (key, ylabel, log) in zip(axes[0], panels, strict=True):
        for label, points in series.items():
            points = sorted((p for p in points if p.get(key) is not None), key=lambda p: p["nfe"])
            ax.plot([p["nfe"] for p in points], [p[key] for p in points], marker="o", label=label)
        if baseline and baseline.get(key) is not None:
            ax.axhline(baseline[key], ls=":", c="black", label=f"{baseline['label']} ({baseline[key]:.3g})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        _finish_panel(ax, log, "NFE (sampling steps)", ylabel)
    fig.suptitle(title, wrap=True)
    _save(fig, path)


def plot_frontier(curves: dict[str, list[dict]], path: Path, reference_entropy: float | None = None,
                  title: str = "Gen PPL and MAUVE against entropy", reference_point: dict | None = None) -> None:
    """One curve per label (model × NFE) through its temperature points (dicts with temperature,
    entropy, gen_ppl and optionally mauve): Gen PPL (log) and, when measured, MAUVE against
    entropy; the reference entropy as a vertical line. Temperatures are read off the table,
    not printed next to points; the two ends of each curve are marked by T. ``reference_point``
    (a point with a ``curve`` name): the model the target entropy comes from, drawn as a star."""
    plt = _pyplot()
    has_mauve = any(p.get("mauve") is not None for points in curves.values() for p in points)
    legend_below = len(curves) > 6  # a long legend inside the axes hides curves
    height = 5 + (0.25 * (len(curves) - 6) if legend_below else 0)  # room for it below the axes
    fig, axes = plt.subplots(1, 2 if has_mauve else 1, figsize=(12 if has_mauve else 7, height), squeeze=False,
                             layout="constrained")
    panels = [("gen_ppl", "Gen PPL (judge)", True)] + ([("mauve", "MAUVE", False)] if has_mauve else [])
    palette = plt.get_cmap("tab20" if len(curves) > 10 else "tab10").colors  # the default cycle repeats after 10
    for ax, (key, ylabel, log) in zip(axes[0], panels, strict=True):
        for k, (label, points) in enumerate(curves.items()):
            points = sorted((p for p in points if p.get(key) is not None), key=lambda p: p["temperature"])
            if not points:
                continue
            line, = ax.plot([p["entropy"] for p in points], [p[key] for p in points], marker="o", ms=4, label=label,
                            color=palette[k % len(palette)])
            ax.plot(points[0]["entropy"], points[0][key], marker="v", ms=8, ls="", color=line.get_color())
            ax.plot(points[-1]["entropy"], points[-1][key], marker="^", ms=8, ls="", color=line.get_color())
        if reference_point is not None and reference_point.get(key) is not None:
            ax.plot(reference_point["entropy"], reference_point[key], marker="*", ms=14, ls="", c="black",
                    label=f"{reference_point['curve']}, T = 1")
        if reference_entropy is not None:
            ax.axvline(reference_entropy, ls="--", c="gray", label=f"reference entropy {reference_entropy:.3f}")
        _finish_panel(ax, log, "unigram entropy (nats)  ▼ lowest T, ▲ highest T", ylabel, legend_below)
    fig.suptitle(title, wrap=True)
    _save(fig, path)


def plot_learning_curve(series: dict[int, list[dict]], teacher: dict[int, dict], reference: dict, path: Path,
                        title: str = "Learning curve") -> None:
    """Gen PPL (log) and, when measured, MAUVE at matched entropy against distillation minutes, one line per
    NFE (points: minutes, gen_ppl, gen_ppl_ci_nearest, mauve); teacher@NFE as a dashed line of the same
    colour, the matched model (``reference``: teacher@1024) as a dotted black line."""
    plt = _pyplot()
    has_mauve = any(p.get("mauve") is not None for points in series.values() for p in points)
    panels = [("gen_ppl", "Gen PPL at matched entropy", True)] + ([("mauve", "MAUVE at matched entropy", False)]
                                                                  if has_mauve else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False, layout="constrained")
    for ax, (key, ylabel, log) in zip(axes[0], panels, strict=True):
        for k, (nfe, points) in enumerate(sorted(series.items())):
            colour = f"C{k}"
            points = sorted((p for p in points if p.get(key) is not None), key=lambda p: p["minutes"])
            ax.plot([p["minutes"] for p in points], [p[key] for p in points], marker="o", c=colour,
                    label=f"student @ NFE {nfe}")
            if key == "gen_ppl":
                cis = [(p["minutes"], p["gen_ppl_ci_nearest"]) for p in points if p.get("gen_ppl_ci_nearest")]
                ax.vlines([m for m, _ in cis], [c[0] for _, c in cis], [c[1] for _, c in cis], colors=colour, alpha=0.5)
            if teacher.get(nfe, {}).get(key) is not None:
                ax.axhline(teacher[nfe][key], ls="--", c=colour, label=f"teacher @ NFE {nfe} ({teacher[nfe][key]:.3g})")
        if reference.get(key) is not None:
            ax.axhline(reference[key], ls=":", c="black", label=f"teacher @ NFE 1024 ({reference[key]:.3g})")
        ax.set_xlim(left=0)
        _finish_panel(ax, log, "distillation wall-clock (minutes)", ylabel)
    fig.suptitle(title, wrap=True)
    _save(fig, path)


def plot_training_log(log: list[dict], keys: list[str], path: Path, title: str = "Training log", window: int = 25) -> None:
    """One panel per logged quantity against training minutes (``log``: metrics.jsonl lines with ``minutes``),
    as a rolling mean over ``window`` steps: whether the signal a method learns from moves at all. SDTT's
    round boundaries (a ``round`` that changes) are dotted lines: its teacher changes there."""
    if not keys:
        raise DidiError("the training log has none of the quantities to plot")
    plt = _pyplot()
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["minutes"], r[key]) for r in log if r.get(key) is not None]
        values = [v for _, v in pts]
        smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                  for i in range(len(values))]
        ax.plot([m for m, _ in pts], values, c="C0", alpha=0.25, lw=0.8)
        ax.plot([m for m, _ in pts], smooth, c="C0")
        for m in [b["minutes"] for a, b in zip(log, log[1:], strict=False) if b.get("round", 0) != a.get("round", 0)]:
            ax.axvline(m, ls=":", c="grey")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("minutes")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(title, wrap=True)
    _save(fig, path)
