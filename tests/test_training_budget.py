"""--max-minutes: a run stops with a checkpoint once its training wall-clock (over resumes) is spent."""

import json

import pytest
import toy_method
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.registry.plugins import get_plugin_manager
from didi_seq.training.run import TrainingRun
from didi_seq_cli.main import app


class CountingTrainer:
    step_count = 0

    def step(self) -> dict:
        self.step_count += 1
        return {"step": self.step_count}


def run_with_clock(tmp_path, seconds_per_step: float, steps: int, ckpt_every: int, max_seconds: float | None):
    run = TrainingRun(tmp_path / f"run{len(list(tmp_path.iterdir()))}", resume=False)
    trainer, saved = CountingTrainer(), []
    run.start(0)
    run.elapsed = lambda: trainer.step_count * seconds_per_step  # a clock that advances one step at a time
    run.loop(trainer, steps, ckpt_every, lambda last: saved.append(last["step"]), max_seconds=max_seconds)
    return trainer.step_count, saved


def test_budget_stops_after_the_step_that_spends_it_and_checkpoints_there(tmp_path):
    steps, saved = run_with_clock(tmp_path, 10.0, steps=100, ckpt_every=4, max_seconds=65.0)
    assert steps == 7 and saved == [4, 7]  # 70 s ≥ 65 s after step 7; the stop is checkpointed


def test_no_extra_checkpoint_when_the_budget_ends_on_one(tmp_path):
    steps, saved = run_with_clock(tmp_path, 10.0, steps=100, ckpt_every=4, max_seconds=80.0)
    assert steps == 8 and saved == [4, 8]


def test_steps_still_end_a_run_inside_its_budget(tmp_path):
    assert run_with_clock(tmp_path, 1.0, steps=5, ckpt_every=2, max_seconds=1e9) == (5, [2, 4, 5])
    assert run_with_clock(tmp_path, 1.0, steps=5, ckpt_every=2, max_seconds=None) == (5, [2, 4, 5])


@pytest.fixture
def toy_plugin():
    pm = get_plugin_manager()
    pm.register(toy_method, name="didi_seq_toy_method")
    yield
    pm.unregister(toy_method)


def test_cli_budget_stops_early_and_says_so(toy_plugin, tiny_ckpt, tmp_path):
    out = tmp_path / "toy"
    r = CliRunner().invoke(app, ["distill", "--domain", "text", "--method", "toy", "--teacher", tiny_ckpt, "--out", str(out),
                                 "--steps", "100000", "--max-minutes", "0.002", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "budget is spent" in r.output
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert 0 < last < 100000 and (out / "LATEST").read_text().strip().endswith(str(last))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_cli_refuses_a_budget_that_is_not_a_positive_number(tiny_ckpt, tmp_path, value):
    out = tmp_path / "x"
    r = CliRunner().invoke(app, ["distill", "--domain", "text", "--method", "sdtt", "--teacher", tiny_ckpt,
                                 "--out", str(out), "--max-minutes", value])
    assert r.exit_code != 0
    one_error_line(r, "--max-minutes must be a positive number")
    assert not out.exists()
