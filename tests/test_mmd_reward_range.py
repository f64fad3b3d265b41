"""benchmarks/mmd_reward_range.py on a tiny teacher: the table's arithmetic and what each row draws."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


@pytest.fixture(scope="module")
def reward_range(tiny_ckpt, tmp_path_factory):
    import mmd_reward_range

    out = tmp_path_factory.mktemp("range") / "range"
    result = mmd_reward_range.main(["--teacher", str(tiny_ckpt), "--rows", "12", "--steps", "1", "3",
                                    "--feature-block", "0", "--out", str(out)])  # the tiny trunk has one block
    return result, out


def test_every_row_is_reported_against_the_teacher_one_step_draw(reward_range):
    result, out = reward_range
    cells = {c["fills"]: c for c in result["cells"]}
    assert list(cells) == ["data itself (x0)", "teacher one-step draw, T = 0.5", "teacher one-step draw, T = 1.0",
                           "teacher one-step draw, T = 1.5", "uniform random tokens",
                           "teacher 1-step ancestral fill", "teacher 3-step ancestral fill"]
    base = cells["teacher one-step draw, T = 1.0"]["mean_r"]
    for c in cells.values():  # r − teacher is a difference of means over the same rows
        assert c["minus_teacher"] == pytest.approx(c["mean_r"] - base, abs=1e-6)
    assert cells["teacher one-step draw, T = 1.0"]["minus_teacher"] == 0.0
    assert 0 < result["rows"] <= 12 and result["alpha"] > 0
    assert json.loads(out.with_suffix(".json").read_text()) == result
    assert "| data itself (x0) |" in out.with_suffix(".md").read_text()


def test_groups_differ_only_where_the_fills_are_drawn(reward_range):
    cells = {c["fills"]: c for c in reward_range[0]["cells"]}
    # every group of the data row holds x0 itself: no spread; drawn fills (one-step or K-step runs with
    # their own seeds) spread, a K-step run that reused one generator for all 8 fills would not
    assert cells["data itself (x0)"]["sd_over_groups"] == 0.0
    for name, c in cells.items():
        if name != "data itself (x0)":
            assert c["sd_over_groups"] > 0, name
