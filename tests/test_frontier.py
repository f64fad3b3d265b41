"""benchmarks/frontier.py's matched-entropy reading, checked by hand."""

import json
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


from test_evaluate import tiny_judge  # noqa: E402,F401  (the fixture)


def test_frontier_end_to_end_is_resumable(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    """Two temperatures, one NFE, a tiny checkpoint and judge: cells land in --work and are reused."""
    import json

    import frontier

    argv = ["--checkpoints", str(tiny_ckpt), "--labels", "tiny", "--nfe", "4", "--temperatures", "0.8", "1.0",
            "--samples", "4", "--seeds", "0", "1", "--judge", str(tiny_judge), "--reference-samples", "4", "--no-mauve",
            "--bootstrap", "20", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out" / "frontier")]
    out = frontier.main(argv)
    cells = sorted(p.name for p in (tmp_path / "work" / "tiny").glob("*.json"))
    assert cells == ["nfe4_T0.8.json", "nfe4_T1.json"]
    rec = json.loads((tmp_path / "work" / "tiny" / "nfe4_T0.8.json").read_text())
    assert rec["temperature"] == 0.8 and rec["num_samples"] == 4 and rec["metrics"]["gen_ppl"]["ci"]["resamples"] == 20
    (row,) = out["matched"]
    assert row["curve"] == "tiny @ NFE 4" and row["target_entropy"] == out["reference"]["values"]["entropy"]
    assert {p["temperature"] for p in out["curves"]["tiny @ NFE 4"]} == {0.8, 1.0}
    for ext in (".json", ".md", ".png"):
        assert (tmp_path / "out" / f"frontier{ext}").exists()
    (tmp_path / "work" / "tiny" / "nfe4_T1_seed0.jsonl").unlink()  # a finished cell is not resampled
    assert frontier.main(argv)["curves"] == out["curves"]


def test_bracket_walks_from_one_towards_the_target_and_stops_once_straddled():
    from frontier import bracket

    def entropy(t):  # entropy rises with T
        return 4.0 + 2.0 * (t - 1.0)

    calls = []

    def at(t):
        calls.append(t)
        return entropy(t)

    assert bracket(TEMPERATURES, 4.12, at) == [1.0, 1.05, 1.1] == calls  # 4.0, 4.1 < 4.12 ≤ 4.2
    calls.clear()
    assert bracket(TEMPERATURES, 3.93, at) == [1.0, 0.975, 0.95] == calls  # 3.95 > 3.93 ≥ 3.90
    assert bracket(TEMPERATURES, 4.0, entropy) == [1.0]  # on the grid point: nothing more to evaluate
    assert bracket(TEMPERATURES, 9.0, entropy) == [1.0, 1.05, 1.1, 1.2]  # grid ends: never extrapolated
    assert bracket([0.9, 1.1], 4.0, entropy) == [0.9, 1.1]  # starts at the point nearest T = 1


def test_parse_match_reads_checkpoint_at_nfe():
    from frontier import parse_match

    assert parse_match("teacher@1024") == ("teacher", 1024)
    assert parse_match("org/model@rev@16") == ("org/model@rev", 16)
    for bad in ("teacher", "teacher@", "@16", "teacher@0", "teacher@x"):
        with pytest.raises(SystemExit, match="--match expects CHECKPOINT@NFE"):
            parse_match(bad)


def test_frontier_bracket_matches_a_models_entropy(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    import frontier

    argv = ["--checkpoints", str(tiny_ckpt), "--labels", "tiny", "--nfe", "2", "--samples", "4", "--seeds", "0",
            "--judge", str(tiny_judge), "--reference-samples", "4", "--no-mauve", "--bootstrap", "20",
            "--match", f"{tiny_ckpt}@4", "--match-label", "ref", "--bracket",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out" / "frontier")]
    out = frontier.main(argv)
    assert out["matched_to"]["curve"] == "ref @ NFE 4" and out["target_entropy"] == out["matched_to"]["entropy"]
    ref = (tmp_path / "work" / "ref" / "nfe4_T1.json")
    assert json.loads(ref.read_text())["metrics"]["entropy"]["mean"] == out["target_entropy"]
    temps = sorted(p["temperature"] for p in out["curves"]["tiny @ NFE 2"])
    assert 1 <= len(temps) <= 2  # only the straddling pair (or the last point) is judged
    assert (tmp_path / "work" / "tiny" / "nfe2_T1_seed0.jsonl").exists()  # the walk starts at T = 1
    judged = sorted(p.name for p in (tmp_path / "work" / "tiny").glob("nfe2_*.json"))
    assert judged == sorted(f"nfe2_T{t:g}.json" for t in temps)
    entropies = [p["entropy"] for p in out["curves"]["tiny @ NFE 2"]]
    row = out["matched"][0]
    assert (min(entropies) <= out["target_entropy"] <= max(entropies)) == (row["interpolated"] is not None)
    assert "(the target)" in (tmp_path / "out" / "frontier.md").read_text()
    assert out["curves"]["tiny @ NFE 2"][0]["rows_evaluated_per_sample"] > 0


def test_the_judge_free_entropy_is_the_evaluated_one(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    """The bracket walks on ``sampled_entropy``; it must equal what ``evaluate`` reports for the same cell."""
    import argparse

    import frontier

    from didi_seq.registry.plugins import get_domain
    from didi_seq.sampling.generate import load_model

    args = argparse.Namespace(work=tmp_path / "work", samples=6, seeds=[0, 1], batch_size=4, judge=str(tiny_judge), sampler="ancestral",
                              reference_samples=4, bootstrap=20)
    model = load_model(get_domain("text"), str(tiny_ckpt))
    walked_h = frontier.sampled_entropy(model, "tiny", 3, 0.9, args)
    assert not frontier.cell_file(args, "tiny", 3, 0.9).exists()  # no judge yet
    rec = frontier.cell(model, "tiny", 3, 0.9, args, ["entropy"])  # reuses the drawn samples
    assert rec["metrics"]["entropy"]["mean"] == pytest.approx(walked_h, abs=1e-12)
    assert frontier.sampled_entropy(model, "tiny", 3, 0.9, args) == rec["metrics"]["entropy"]["mean"]


def test_a_label_reused_for_another_checkpoint_is_refused(tiny_ckpt, tiny_judge, tmp_path):  # noqa: F811
    """Cells are filed by label: a re-distilled model under an old label must not inherit the old samples."""
    import argparse

    import frontier

    from conftest import build_tiny_checkpoint
    from didi_seq.registry.plugins import get_domain
    from didi_seq.sampling.generate import load_model

    args = argparse.Namespace(work=tmp_path / "work", samples=2, seeds=[0], batch_size=2, judge=str(tiny_judge), sampler="ancestral",
                              reference_samples=4, bootstrap=20)
    first = load_model(get_domain("text"), str(tiny_ckpt))
    h = frontier.sampled_entropy(first, "same-label", 3, 1.0, args)
    assert frontier.sampled_entropy(first, "same-label", 3, 1.0, args) == h  # its own cells are reused
    other = load_model(get_domain("text"), str(build_tiny_checkpoint(tmp_path / "other", seed=1)))
    with pytest.raises(SystemExit, match="was made by checkpoint .* not by this model"):
        frontier.sampled_entropy(other, "same-label", 3, 1.0, args)
    frontier.cell(first, "same-label", 3, 1.0, args, ["entropy"])
    with pytest.raises(SystemExit, match="another --work"):
        frontier.cell(other, "same-label", 3, 1.0, args, ["entropy"])


def test_every_frontier_curve_has_its_own_colour(monkeypatch, tmp_path):
    """methods.py draws 12 model × NFE curves; matplotlib's default cycle repeats after 10."""
    from didi_seq.evaluation import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    curves = {f"m{k} @ NFE 8": [{"temperature": t, "entropy": 4 + k / 10 + t, "gen_ppl": 100.0 + k} for t in (0.9, 1.0)]
              for k in range(12)}
    plots.plot_frontier(curves, tmp_path / "f.png")
    colours = [tuple(line.get_color()) for line in figures[0].axes[0].get_lines() if line.get_label() in curves]
    assert len(colours) == 12 and len(set(colours)) == 12


from test_bad_inputs import tiny_student  # noqa: E402,F401  (the fixture: a 1-step DiDi-Instruct student)


def test_frontier_samples_with_the_chosen_sampler_and_files_it_apart(tiny_student, tiny_judge, tmp_path):  # noqa: F811
    """--sampler rgas: the cells are RGAS's (their records say so), in files of their own beside the ancestral ones."""
    import argparse

    import frontier

    from didi_seq.registry.plugins import get_domain
    from didi_seq.sampling.generate import load_model

    args = argparse.Namespace(work=tmp_path / "work", samples=2, seeds=[0], batch_size=2, judge=str(tiny_judge),
                              reference_samples=4, bootstrap=20, sampler="rgas")
    model = load_model(get_domain("text"), str(tiny_student))
    frontier.sampled_entropy(model, "s", 2, 1.0, args)
    (rgas_file,) = (tmp_path / "work" / "s").glob("*.jsonl")
    assert rgas_file.name == "nfe2_T1_rgas_seed0.jsonl"
    records = [json.loads(x) for x in rgas_file.read_text().splitlines()]
    assert {r["sampler"] for r in records} == {"rgas"} and all(r["run"]["discriminator_calls"] > 0 for r in records)
    ancestral = argparse.Namespace(**{**vars(args), "sampler": "ancestral"})
    frontier.sampled_entropy(model, "s", 2, 1.0, ancestral)
    assert (tmp_path / "work" / "s" / "nfe2_T1_seed0.jsonl").exists()
    with pytest.raises(SystemExit, match=r"sampled with \['rgas'\], not ancestral"):
        frontier.cached(rgas_file, model, "ancestral")
