"""benchmarks/samplers.py: rows at matched entropy and their ratios to ancestral, from frontier results."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def front(target, cells):
    """A frontier result: cells {(label, nfe): [(T, entropy, gen_ppl), ...]} read at ``target``."""
    import frontier

    curves = {f"{label} @ NFE {nfe}": [{"temperature": t, "entropy": h, "gen_ppl": g, "gen_ppl_ci": [g - 5, g + 5],
                                         "mauve": None, "rep_4": 0.001, "rows_evaluated_per_sample": nfe,
                                         "s_per_sample": 0.1} for t, h, g in pts]
              for (label, nfe), pts in cells.items()}
    matched = [{"curve": name, **frontier.matched_entropy(pts, target)} for name, pts in curves.items()]
    return {"target_entropy": target, "matched": matched, "curves": curves}


def test_rows_are_read_at_the_target_with_ratios_to_ancestral():
    import samplers

    anc = front(4.9, {("m", 16): [(0.95, 4.8, 500.0), (1.0, 5.0, 700.0)]})
    dil = front(4.9, {("m", 16): [(0.95, 4.85, 450.0), (1.0, 4.95, 550.0)]})
    rows = samplers.compare([("dilated", dil), ("ancestral", anc)], ["m"], [16])
    assert [r["sampler"] for r in rows] == ["ancestral", "dilated"]  # the reference first
    assert rows[0]["gen_ppl"] == pytest.approx(600.0) and rows[1]["gen_ppl"] == pytest.approx(500.0)  # interpolated
    assert rows[0]["vs_ancestral"] == 0 and rows[1]["vs_ancestral"] == pytest.approx(500 / 600 - 1)


def test_results_matched_at_different_entropies_are_refused():
    import samplers

    with pytest.raises(SystemExit, match="different entropies"):
        samplers.compare([("ancestral", front(4.9, {})), ("dilated", front(4.8, {}))], ["m"], [16])
