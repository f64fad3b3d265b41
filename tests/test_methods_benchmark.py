"""benchmarks/methods.py end to end on a tiny teacher: budgeted runs, matched-entropy table, resume."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from test_evaluate import tiny_judge  # noqa: E402,F401  (the fixture)


@pytest.mark.slow
def test_methods_benchmark_distils_evaluates_and_resumes(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    import methods

    argv = ["--methods", "sdtt", "mmd", "--budget-minutes", "0.05", "--steps", "sdtt=7", "mmd=3",
            "--flags", "mmd=--mmd-feature-block 0",
            "--teacher", str(tiny_ckpt), "--nfe", "2", "4", "--match-nfe", "4", "--samples", "4", "--seeds", "0", "1",
            "--judge", str(tiny_judge), "--no-mauve", "--reference-samples", "4", "--bootstrap", "20",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out" / "methods")]
    out = methods.main(argv)
    assert [(r["model"], r["nfe"]) for r in out["rows"]] == [
        ("teacher", 2), ("teacher", 4), ("sdtt", 2), ("sdtt", 4), ("mmd", 2), ("mmd", 4)]
    for method, cap in (("sdtt", 7), ("mmd", 3)):
        t = out["training"][method]
        assert 0 < t["steps"] <= cap and t["tokens_per_s"] > 0
        prov = json.loads(next((tmp_path / "work" / method / "checkpoints").glob("step_*/provenance.json")).read_text())
        assert prov["method"] == method
    teacher4 = next(r for r in out["rows"] if r["model"] == "teacher" and r["nfe"] == 4)
    # teacher@4 at T = 1 *is* the target: read exactly there
    assert teacher4["gen_ppl"] == pytest.approx(out["reference"]["gen_ppl"]) and teacher4["entropy_gap"] == 0
    for ext in (".json", ".md", ".png", "_frontier.json"):
        assert (tmp_path / "out" / f"methods{ext}").exists()
    md = (tmp_path / "out" / "methods.md").read_text()
    assert "| sdtt | 4 |" in md and "Target: teacher @ NFE 4 at T = 1" in md
    # a second run reuses the finished distillations and every cell
    for seed_file in (tmp_path / "work" / "frontier" / "sdtt").glob("*_seed0.jsonl"):
        seed_file.unlink()
    again = methods.main(argv)
    assert again["rows"] == out["rows"] and again["training"] == out["training"]
    # a student checkpoint given with --extra reports the training its provenance records
    assert methods.checkpoint_training(str(tmp_path / "work" / "sdtt")) == {**out["training"]["sdtt"]}
    assert methods.checkpoint_training(str(tiny_ckpt)) is None  # a teacher


def test_evaluate_only_refuses_a_run_that_is_still_training(tmp_path):
    """Its latest checkpoint is an intermediate one: judging it would fill the cache with the wrong model."""
    import argparse

    import methods

    def run_at(step, wall_clock_s):
        ckpt = tmp_path / "mmd" / "checkpoints" / f"step_{step:07d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "provenance.json").write_text(json.dumps({"step": step, "wall_clock_s": wall_clock_s}))
        (tmp_path / "mmd" / "LATEST").write_text(ckpt.name)

    args = argparse.Namespace(work=tmp_path, budget_minutes=30.0)
    with pytest.raises(SystemExit, match="no mmd run"):
        methods.finished_run("mmd", 400, args)
    run_at(120, 600.0)
    with pytest.raises(SystemExit, match="is at step 120 of 400, 10.0 of 30 min: let it finish"):
        methods.finished_run("mmd", 400, args)
    run_at(258, 1805.0)  # stopped by the budget
    assert methods.finished_run("mmd", 400, args)["step"] == 258
    run_at(400, 900.0)  # all its steps
    assert methods.finished_run("mmd", 400, args)["step"] == 400
