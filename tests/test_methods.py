"""Distillation methods as plugins: a toy method from a test plugin is listed and runs; method
flags, --method and --resume refuse what does not belong to the run with one error line."""

import json

import pytest
import toy_method
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.options import flags_of, parse_flags
from didi_seq.registry.plugins import get_plugin_manager, methods
from didi_seq_cli.main import app

runner = CliRunner()
FAST = ["--batch-size", "2", "--group-size", "2", "--disc-warmup-steps", "0", "--threads", "1"]


@pytest.fixture
def toy_plugin():
    pm = get_plugin_manager()
    pm.register(toy_method, name="didi_seq_toy_method")
    try:
        yield
    finally:
        pm.unregister(toy_method)
    assert "toy" not in methods()


def distill(*args):
    return runner.invoke(app, ["distill", "--domain", "text", *map(str, args)])


def test_didi_instruct_is_the_builtin_method():
    assert list(methods()) == ["didi-instruct", "sdtt", "mmd"]
    flags = flags_of(methods()["didi-instruct"].config)
    assert {"--disc-lr", "--positive", "--score-decomposition", "--no-score-decomposition"} <= set(flags)
    assert "--steps" not in flags  # the run's settings are distill's own options


def test_method_flags_parse_types_and_bools(toy_plugin):
    known = {n: m.config for n, m in methods().items()}

    def parse_method_flags(args):
        return parse_flags("didi-instruct", known, args, "--method", "distill")

    given = parse_method_flags(["--disc-lr", "3e-4", "--no-coupled-time", "--pi=uniform", "--batch-size", "8"])
    assert given == {"disc_lr": ("--disc-lr 3e-4", 3e-4), "coupled_time": ("--no-coupled-time", False),
                     "pi": ("--pi uniform", "uniform"), "batch_size": ("--batch-size 8", 8)}
    with pytest.raises(DidiError, match="--toy-lr is an option of --method toy, not of --method didi-instruct"):
        parse_method_flags(["--toy-lr", "1"])
    with pytest.raises(DidiError, match="--batch-size expects an integer"):
        parse_method_flags(["--batch-size", "2.5"])


def test_toy_method_from_a_test_plugin_is_listed_and_runs(toy_plugin, tiny_ckpt, tmp_path):
    listed = runner.invoke(app, ["plugins"], terminal_width=200)
    assert listed.exit_code == 0 and "didi_seq_toy_method" in listed.output
    assert "\n  toy: a test method: match the teacher at the all-mask state" in listed.output  # with its description
    assert "\n  mmd: representation-space MMD (arXiv 2610.06648)" in listed.output
    out = tmp_path / "toy"
    r = distill("--method", "toy", "--teacher", tiny_ckpt, "--out", out, "--steps", 2, "--toy-lr", "0.01", "--threads", 1)
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(out)
    assert ckpt.config["kind"] == "student" and (ckpt.path / "toy.json").exists()
    assert ckpt.provenance["method"] == "toy" and ckpt.provenance["distill_config"]["toy_lr"] == 0.01
    assert ckpt.provenance["toy_rows"] == 2 and ckpt.provenance["teacher"]["sha256"]
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    # a longer run resumes; its checkpoints sample through the ordinary loader
    assert distill("--method", "toy", "--teacher", tiny_ckpt, "--out", out, "--steps", 3, "--resume").exit_code == 0
    assert load_checkpoint(out).provenance["step"] == 3
    s = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(out), "--nfe", "2", "--num-samples", "1"])
    assert s.exit_code == 0, s.output


def test_flags_of_another_method_and_unknown_methods_are_refused(toy_plugin, tiny_ckpt, tmp_path):
    one_error_line(distill("--method", "toy", "--disc-lr", "1e-3", "--out", tmp_path / "a"),
                   "--disc-lr is an option of --method didi-instruct, not of --method toy")
    one_error_line(distill("--toy-lr", "1e-3", "--out", tmp_path / "b"), "--toy-lr is an option of --method toy")
    one_error_line(distill("--method", "sdtt-typo"), "known methods: didi-instruct, mmd, sdtt, toy")
    one_error_line(distill("--no-such-flag", "1"), "no such option --no-such-flag")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_refuses_another_method(toy_plugin, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert distill("--teacher", tiny_ckpt, "--out", out, "--steps", 1, "--ckpt-every", 1, *FAST).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    one_error_line(distill("--method", "toy", "--teacher", tiny_ckpt, "--out", out, "--steps", 2, "--resume"),
                   "is a --method didi-instruct run, not toy")
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("flag, fragment", [
    (["--batch-size", "4"], "--batch-size 4 differs from the run"),
    (["--no-coupled-time"], "--no-coupled-time differs from the run"),
    (["--seed", "3"], "--seed 3 differs from the run"),
    (["--ckpt-every", "2"], "--ckpt-every 2 differs from the run"),
])
def test_distill_resume_refuses_a_changed_option(tiny_ckpt, tmp_path, flag, fragment):
    out = tmp_path / "run"
    assert distill("--teacher", tiny_ckpt, "--out", out, "--steps", 1, "--ckpt-every", 1, *FAST).exit_code == 0
    r = distill("--teacher", tiny_ckpt, "--out", out, "--steps", 2, "--resume", *FAST, *flag)
    one_error_line(r, fragment)
    assert (out / "LATEST").read_text().strip() == "step_0000001"


def test_distill_help_lists_every_methods_options(toy_plugin):
    r = runner.invoke(app, ["distill", "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "--method didi-instruct" in r.output and "--disc-lr FLOAT" in r.output
    assert "--method toy" in r.output and "--toy-lr FLOAT" in r.output


def test_a_method_whose_config_lacks_the_run_settings_is_refused_by_name(tiny_ckpt, tmp_path):
    import types
    from dataclasses import dataclass

    from didi_seq.distill.method import DistillMethod, MethodConfig
    from didi_seq.registry.hookspecs import hookimpl

    @dataclass
    class NoRunFields(MethodConfig):
        lr: float = 1e-3

    mod = types.ModuleType("didi_seq_broken_method")
    mod.register_methods = hookimpl(lambda register: register(DistillMethod("broken", "no run fields", NoRunFields, None)))
    pm = get_plugin_manager()
    pm.register(mod, name="didi_seq_broken_method")
    from didi_seq.registry import plugins

    try:  # a broken plugin is skipped with one warning naming it (issue 24), never the end of every command
        assert "broken" not in methods() and "didi-instruct" in methods()
        assert any("'didi_seq_broken_method'" in w and "its config lacks the run settings steps, ckpt_every, seed, threads"
                   in w for w in plugins.plugin_warnings()), plugins.plugin_warnings()
    finally:
        pm.unregister(mod)
        plugins._FAILURES.pop("didi_seq_broken_method", None)
