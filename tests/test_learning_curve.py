"""benchmarks/learning_curve.py: checkpoints picked by training minutes, end to end on a tiny teacher."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from test_evaluate import tiny_judge  # noqa: E402,F401  (the fixture)


def fake_checkpoint(folder: Path, step: int, minutes: float) -> Path:
    path = folder / f"step_{step:07d}"
    path.mkdir(parents=True)
    (path / "provenance.json").write_text(json.dumps({"step": step, "wall_clock_s": 60 * minutes}))
    return path


def test_checkpoints_are_picked_by_training_minutes(tmp_path):
    import learning_curve

    run, snaps = tmp_path / "run", tmp_path / "snaps"
    for step, minutes in ((100, 4.0), (200, 9.5), (300, 15.0), (400, 22.0)):
        fake_checkpoint(snaps, step, minutes)
    fake_checkpoint(run / "checkpoints", 400, 22.0)  # the same step in both places counts once,
    fake_checkpoint(run / "checkpoints", 500, 30.0)
    found = learning_curve.checkpoints_of(run, [snaps])
    assert [c["step"] for c in found] == [100, 200, 300, 400, 500]
    assert found[3]["path"].parent == snaps  # as the snapshot, which a training run cannot retire
    # the last checkpoint at or before each minute, each once; none before the first
    assert [c["step"] for c in learning_curve.pick(found, [3, 10, 20, 21, 40])] == [200, 300, 500]
    assert learning_curve.pick(found, [1]) == []


def test_training_minutes_are_the_running_sum_of_step_times(tmp_path):
    import learning_curve

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps({"step": i, "loss": 1.0 / i, "s_per_step": 30.0})
                                                      for i in range(1, 5)))
    log = learning_curve.read_log(tmp_path)
    assert [r["minutes"] for r in log] == [0.5, 1.0, 1.5, 2.0]


@pytest.mark.slow
def test_learning_curve_end_to_end(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "didi_seq", "distill", "--domain", "text", "--method", "sdtt",
                    "--teacher", str(tiny_ckpt), "--out", str(run), "--steps", "4", "--sdtt-start-nfe", "8",
                    "--sdtt-rounds", "2", "--ckpt-every", "2", "--threads", "1"], check=True, capture_output=True)
    import learning_curve

    out = learning_curve.main(["--run", str(run), "--minutes", "1000", "--nfe", "2", "4", "--match", f"{tiny_ckpt}@4",
                               "--samples", "4", "--seeds", "0", "1", "--judge", str(tiny_judge), "--no-mauve",
                               "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out" / "curve")])
    assert [(r["step"], r["nfe"]) for r in out["rows"]] == [(4, 2), (4, 4)]
    assert set(out["teacher"]) == {"2", "4"}
    for suffix in (".json", ".md", ".png", "_training.png"):
        assert (tmp_path / "out" / f"curve{suffix}").exists()
    assert "| 4 | 2 |" in (tmp_path / "out" / "curve.md").read_text()
    assert {"loss", "grad_norm"} <= set(out["training_log_keys"])
