"""docs/results.md's tables against the committed results files they quote, and the README's commands against CI.

A number in docs/results.md that no results file backs (or one left behind when a benchmark is
re-run) fails here; the benchmarks themselves are run by hand (see ``benchmarks/``). The README
is a short front page (issue 25): its set-up commands are checked, its numbers live in docs/results.md.
"""

import itertools
import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOC = (ROOT / "docs" / "results.md").read_text()  # where the numbers live
QUICK_START = ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/didi-seq sample --domain text --nfe 16 "
               "--num-samples 4")
RESULTS = ROOT / "benchmarks" / "results"


def first_table(text: str) -> list[str]:
    """The lines of the first Markdown table in ``text`` (header and |---| line included)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    return list(itertools.takewhile(lambda ln: ln.startswith("|"), lines[start:]))


def table_after(heading_fragment: str) -> list[list[str]]:
    """Body rows (cells stripped) of the first Markdown table after the line holding ``heading_fragment``."""
    body = first_table(DOC[DOC.index(heading_fragment):])[2:]  # skip the header and the |---| line
    return [[c.strip().strip("*") for c in ln.strip().strip("|").split("|")] for ln in body]


def test_readme_test_command_is_what_ci_runs():
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert len(ci) == 1 and f"\n    {ci[0]}\n" in README


def test_sampler_overhead_table_matches_its_results():
    res = json.loads((RESULTS / "sampler_overhead.json").read_text())
    rows = table_after("From `benchmarks/sampler_overhead.py")
    assert len(rows) == len(res["rows"])
    for cells, r in zip(rows, res["rows"], strict=True):
        assert cells == [str(r["nfe"]), str(r["batch"]), f"{r['logic_pct']:.1f} %", f"{r['cache_calls_per_seq']:.0f}",
                         f"{r['cache_speedup']:.1f}x"]
    assert f"({res['cached_calls_nfe1024_batch1']} real calls" in DOC


def test_headline_table_matches_didi_vs_teacher_results():
    series = json.loads((RESULTS / "didi_vs_teacher.json").read_text())["series"]
    cells = {row[0]: row[1:] for row in table_after("Headline benchmark")}
    for col, name in enumerate(["teacher", "student", "student+RGAS"]):
        for r in series[name]:
            expected = f"{r['gen_ppl']:.1f} ± {r['gen_ppl_std']:.1f} ({r['entropy']:.3f})"
            assert cells[str(r["nfe"])][col].replace("**", "") == expected, (name, r["nfe"])


def test_ablation_table_matches_its_results_file():
    rows = {r["configuration"]: r["results"] for r in json.loads((RESULTS / "ablation.json").read_text())["rows"]}
    table = table_after("Cumulative ablation (")
    assert [c[0] for c in table] == list(rows)
    for cells in table:
        got = [re.sub(r"\s+", " ", c) for c in cells[1:]]
        res = rows[cells[0]]
        assert got == [f"{res[n]['gen_ppl']:.1f} ± {res[n]['gen_ppl_std']:.1f}" for n in ("8", "16", "32")], cells[0]


def test_teacher_nfe_table_matches_the_sweep():
    sweep = json.loads((RESULTS / "nfe_sweep_teacher.json").read_text())
    rows = [c for c in table_after("Embedded teacher across NFE") if c[0].isdigit()]
    by_nfe = {str(r["nfe"]): r for r in sweep["rows"]}
    assert len(rows) == len(by_nfe)
    for cells in rows:
        r = by_nfe[cells[0]]
        assert cells[1:5] == [f"{r['gen_ppl']:.1f} ± {r['gen_ppl_std']:.1f}", f"{r['entropy']:.3f}", f"{r['s_per_sample']:.2f}",
                              f"{r['sequence_evaluations_per_sample']:.1f}"], cells
    ref = sweep["reference"]
    assert f"| real validation text | {ref['gen_ppl']:.1f} | {ref['entropy']:.3f} |" in DOC


def copied_tables(results_md: str) -> list[str]:
    """The lines of a results file's first Markdown table; docs/results.md must carry each one verbatim."""
    table = first_table((RESULTS / results_md).read_text())
    assert len(table) > 2
    return table


@pytest.mark.parametrize("results_md", ["methods.md", "frontier_teacher.md", "samplers.md", "learning_curve_mmd.md",
                                        "learning_curve_didi_instruct.md",
                                        "learning_curve_sdtt_curriculum.md"])
def test_matched_entropy_tables_are_the_benchmarks_own(results_md):
    """The matched-entropy tables in docs/results.md are the results files', line for line."""
    missing = [ln for ln in copied_tables(results_md) if f"\n{ln}\n" not in DOC]
    assert not missing, missing[:2]


def test_methods_claims_name_the_measured_best():
    res = json.loads((RESULTS / "methods.json").read_text())
    best16 = min((r for r in res["rows"] if r["nfe"] == 16 and r["model"] != "teacher"), key=lambda r: r["gen_ppl"])
    assert f"MMD at {best16['gen_ppl']:.1f}" in DOC and best16["model"] == "mmd"
    assert f"teacher@1024's {res['reference']['gen_ppl']:.1f}" in DOC


def test_readme_is_a_short_front_page_with_the_quick_start():
    """Issue 25: a new user met 300 lines of tables before "Python"; the README now starts with using it."""
    assert f"\n    {QUICK_START}\n" in README
    assert len(README.splitlines()) <= 80 and "|---" not in README  # no tables: numbers live in docs/results.md
    for page in ("docs/usage.md", "docs/results.md", "docs/python-api.md", "docs/writing-a-plugin.md"):
        assert f"]({page})" in README, page
    assert "--seed" in README and "same samples" in README  # the default seed makes runs identical


def test_round_two_names_what_ships_and_what_is_still_missed():
    section = DOC[DOC.index("## Few-step quality, round 2"):].split("\n## ", 1)[0]
    assert "generation_config.json" in section and "Not met: a student better than its own teacher" in section


def test_markdown_links_resolve():
    """Relative links in the README and docs/ point at files that exist (the README's content moved under docs/)."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad = [f"{page.name}: {target}" for page in pages
           for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
           if "://" not in target and not (page.parent / target).exists()]
    assert not bad, bad


def test_round_three_quotes_its_results_files():
    """The H200 students' matched-entropy numbers and the MMD reward-range table in docs/results.md are the files'."""
    section = DOC[DOC.index("## Few-step quality, round 3"):].split("\n## ", 1)[0]
    for nfe in (16, 8):
        m = json.loads((RESULTS / f"frontier_sdtt_h200_nfe{nfe}_ancestral.json").read_text())["matched"][0]
        assert f"**{m['interpolated']['gen_ppl']:.1f}**" in section and f"{m['interpolated']['mauve']:.3f}" in section, nfe
    cells = json.loads((RESULTS / "mmd_reward_range.json").read_text())["cells"]
    for c in cells:
        assert f"| {c['fills']} | {c['mean_r']:.4f} | {c['minus_teacher']:+.4f} | {c['sd_over_groups']:.4f} |" in section, c


def test_round_four_quotes_the_joint_gap_file():
    """The joint-gap table in docs/results.md round 4 and the README's 0.22 are benchmarks/results/joint_gap.json's."""
    section = DOC[DOC.index("## Few-step quality, round 4"):].split("\n## ", 1)[0]
    rows = json.loads((RESULTS / "joint_gap.json").read_text())["results"]
    assert len(rows) == 9
    for r in rows:
        gap = r["gap"]
        assert (f"| {r['nfe']} | {r['teacher_steps']} | {r['revealed_tokens']} | {r['one_step_nll']['value']:.4f} | "
                f"{r['k_step_nll']['value']:.4f} | {gap['value']:.4f} [{gap['ci'][0]:.4f}–{gap['ci'][1]:.4f}] |") in section, r
        assert gap["ci"][0] > 0  # the gap is positive at every step count: the claim of the section
    at8 = max(r["gap"]["value"] for r in rows if r["nfe"] == 8)
    assert f"{at8:.2f} nats each" in README and f"at least {at8:.2f}" in section


def interpolated_cell(name: str, nfe: int) -> dict:
    """The matched-entropy (interpolated) cell at ``nfe`` of a one-model frontier results file ``name``.json."""
    matched = json.loads((RESULTS / f"{name}.json").read_text())["matched"]
    return next(m["interpolated"] for m in matched if m["curve"].endswith(f"NFE {nfe}"))


def test_schedule_table_quotes_its_frontier_files():
    """The `--schedule` table (linear, cosine, poly:2 × NFE 8, 16) is the frontier files' interpolated cells."""
    cell = interpolated_cell
    files = {"linear (shipped)": ("frontier_dilated_student", "frontier_dilated_student"),
             "cosine": ("frontier_dilated_cosine_nfe8", "frontier_dilated_cosine"),
             "poly:2": ("frontier_dilated_poly2", "frontier_dilated_poly2")}
    for label, (f8, f16) in files.items():
        c8, c16 = cell(f8, 8), cell(f16, 16)
        row = f"| {label} | {c8['gen_ppl']:.1f} | {c8['mauve']:.3f} | {c16['gen_ppl']:.1f} | {c16['mauve']:.3f} |"
        assert row in DOC, row
    linear = files["linear (shipped)"][0]
    for f8, f16 in list(files.values())[1:]:  # the claim that keeps linear the default
        assert cell(f8, 8)["gen_ppl"] > cell(linear, 8)["gen_ppl"] and cell(f16, 16)["gen_ppl"] > cell(linear, 16)["gen_ppl"]


def test_dilated_eight_against_sixteen_on_new_seeds_quotes_its_file():
    """Round 4's check of "8 steps score as well as 16" with dilated is the seeds-3–5 frontier file's."""
    cells = {nfe: interpolated_cell("frontier_dilated_student_seeds345", nfe) for nfe in (8, 16)}
    assert f"**{cells[8]['gen_ppl']:.1f}**" in DOC and f"**{cells[16]['gen_ppl']:.1f}**" in DOC
    assert f"(MAUVE {cells[8]['mauve']:.3f} / {cells[16]['mauve']:.3f}" in DOC
    assert cells[8]["gen_ppl"] <= cells[16]["gen_ppl"] * 1.05  # the claim: 8 steps no worse than 16


def training_log(file_name: str) -> list[dict]:
    """A committed metrics.jsonl from benchmarks/results/, one dict per logged step."""
    return [json.loads(ln) for ln in (RESULTS / file_name).read_text().splitlines()]


def log_window_means(name: str, key: str) -> tuple[float, float]:
    """Mean of ``key`` over the first and over the last tenth (at least 25 steps) of a committed training log."""
    rows = training_log(f"learning_curve_{name}_metrics.jsonl")
    k = max(25, len(rows) // 10)
    return tuple(statistics.fmean(r[key] for r in part if key in r) for part in (rows[:k], rows[-k:]))


def round_window_means(name: str, key: str, k: int) -> list[tuple[float, float]]:
    """Per curriculum round of a committed training log, the mean of ``key`` over its first and its last k steps."""
    rows = training_log(f"learning_curve_{name}_metrics.jsonl")
    rounds = sorted({r["round"] for r in rows if "round" in r})
    out = []
    for rnd in rounds:
        values = [r[key] for r in rows if r.get("round") == rnd]
        out.append((statistics.fmean(values[:k]), statistics.fmean(values[-k:])))
    return out


ROUND_FIVE_LOG_QUOTES = [("mmd", "reward", ".4f"), ("mmd", "advantage_abs", ".4f"), ("mmd", "kl", ".4f"),
                         ("mmd", "drift", ".4f"), ("mmd", "grad_momentum_cos", "+.3f"), ("didi_instruct", "reward", ".2f"),
                         ("didi_instruct", "kl", ".3f"), ("didi_instruct", "disc_acc", ".2f"),
                         ("didi_instruct", "grad_momentum_cos", "+.3f")]


def test_round_five_quotes_its_learning_curves_and_training_logs():
    """Round 5's diagnosis (first → last tenth of each committed log), its commands and its claims: MMD's
    curve stays within a few per cent of teacher@NFE, DiDi-Instruct's is worse at every point."""
    section = DOC[DOC.index("## Few-step quality, round 5"):].split("\n## ", 1)[0]
    for name, key, fmt in ROUND_FIVE_LOG_QUOTES:
        first, last = log_window_means(name, key)
        assert f"`{key}` {first:{fmt}} → {last:{fmt}}" in section, (name, key, first, last)
    gaps = {}
    for name in ("mmd", "didi_instruct", "sdtt_curriculum"):
        prov = json.loads((RESULTS / f"learning_curve_{name}_provenance.json").read_text())
        curve = json.loads((RESULTS / f"learning_curve_{name}.json").read_text())
        assert prov["command"].replace("/work/runs/lc/", "runs/") in section
        assert curve["command"].replace("/work/runs/lc/", "runs/") in section.replace(" \\\n        ", " ")
        assert {r["nfe"] for r in curve["rows"]} == {8, 16} and len(curve["rows"]) >= 6
        gaps[name] = [r["gen_ppl"] / curve["teacher"][str(r["nfe"])]["gen_ppl"] - 1 for r in curve["rows"]]
    assert max(abs(g) for g in gaps["mmd"]) < 0.05
    assert min(gaps["didi_instruct"]) > 0
    for r, (first, last) in enumerate(round_window_means("sdtt_curriculum", "loss", 50)):
        assert f"round {r} ({32 >> r}-step" in section and f"{first:.4f} → {last:.4f}" in section, (r, first, last)
    gap_tables = [ln for ln in (RESULTS / "sdtt_target_gap.md").read_text().splitlines() if ln.startswith("|")]
    assert len(gap_tables) >= 10 and all(f"\n{ln}\n" in section for ln in gap_tables)
    shares = [e["reverse_reducible"] / e["reverse_start"]
              for e in json.loads((RESULTS / "sdtt_target_gap.json").read_text())["extrapolated"]]
    assert f"remove {min(shares) * 100:.0f}–{max(shares) * 100:.0f} % of its starting loss" in section
    assert "docs/results.md#few-step-quality-round-5-learning-curves-of-mmd-didi-instruct-and-sdtt" in README


def test_round_five_quotes_the_positive_teacher_pilot_against_the_default_run():
    """DiDi-Instruct with --positive teacher against the default run over the same steps (151–175): the quotes
    are the two committed logs', and the claim holds (the student leaves its teacher at least as fast)."""
    section = DOC[DOC.index("## Few-step quality, round 5"):].split("\n## ", 1)[0]
    prov = json.loads((RESULTS / "didi_positive_teacher_pilot_provenance.json").read_text())
    assert prov["command"].replace("/work/runs/lc/", "runs/") in section and prov["step"] == 175

    def window(path: str, key: str) -> float:
        rows = training_log(path)
        return statistics.fmean(r[key] for r in rows if 151 <= r["step"] <= 175 and key in r)

    for key in ("kl", "disc_acc", "reward"):
        pilot, default = (window(f"{name}_metrics.jsonl", key)
                          for name in ("didi_positive_teacher_pilot", "learning_curve_didi_instruct"))
        assert f"`{key}` {pilot:.3f} against {default:.3f}" in section, (key, pilot, default)
        if key == "kl":
            assert pilot >= default * 0.9
