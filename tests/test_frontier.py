"""benchmarks/frontier.py's matched-entropy reading, checked by hand."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from frontier import TEMPERATURES, matched_entropy  # noqa: E402

CURVE = [  # deliberately not in temperature order
    {"temperature": 1.1, "entropy": 5.0, "gen_ppl": 400.0, "mauve": 0.8},
    {"temperature": 0.9, "entropy": 4.0, "gen_ppl": 100.0, "mauve": 0.5},
    {"temperature": 1.0, "entropy": 4.5, "gen_ppl": 200.0, "mauve": 0.7},
]


def test_matched_entropy_nearest_and_interpolated_by_hand():
    out = matched_entropy(CURVE, 4.6)
    assert out["nearest"]["temperature"] == 1.0 and out["nearest"]["entropy_gap"] == pytest.approx(-0.1)
    i = out["interpolated"]  # 4.6 is 1/5 of the way from H 4.5 (T 1.0) to H 5.0 (T 1.1)
    assert i["between_temperatures"] == [1.0, 1.1]
    assert i["gen_ppl"] == pytest.approx(200 + 0.2 * 200) and i["mauve"] == pytest.approx(0.72)
    assert i["temperature"] == pytest.approx(1.02)


def test_matched_entropy_on_a_grid_point_and_outside_the_curve():
    on = matched_entropy(CURVE, 4.0)
    assert on["interpolated"]["gen_ppl"] == pytest.approx(100.0) and on["nearest"]["entropy_gap"] == 0
    out = matched_entropy(CURVE, 5.5)  # never extrapolated
    assert out["interpolated"] is None and out["nearest"]["temperature"] == 1.1
    no_mauve = matched_entropy([{k: v for k, v in p.items() if k != "mauve"} for p in CURVE], 4.25)
    assert "mauve" not in no_mauve["interpolated"] and no_mauve["interpolated"]["gen_ppl"] == pytest.approx(150.0)


def test_default_grid_is_the_papers():
    assert TEMPERATURES == [0.75, 0.80, 0.85, 0.875, 0.90, 0.925, 0.95, 0.975, 1.00, 1.05, 1.10, 1.20]
