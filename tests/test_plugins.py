import importlib.metadata
import sys
import types

from typer.testing import CliRunner

from didi_seq.domain import Domain
from didi_seq.registry.hookspecs import hookimpl
from didi_seq.registry.plugins import domains, get_plugin_manager


def test_text_domain_found_through_entry_point():
    eps = importlib.metadata.entry_points(group="didi_seq")
    assert "text" in {ep.name for ep in eps}
    from didi_seq.registry.plugins import plugin_names

    dists = dict(plugin_names())
    assert dists.get("text", "").startswith("didi-seq ")
    assert "text" in domains()


def test_plugin_registered_in_test_appears_in_cli():
    from didi_seq_cli.main import app

    mod = types.ModuleType("didi_test_plugin")

    @hookimpl
    def register_domains(register):
        register(Domain(name="dna-test", description="a test domain", load_tokenizer=lambda p: None,
                        load_corpus=lambda s: {}))

    mod.register_domains = register_domains
    sys.modules["didi_test_plugin"] = mod
    pm = get_plugin_manager()
    pm.register(mod, name="didi_test_plugin")
    try:
        result = CliRunner().invoke(app, ["plugins"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "dna-test" in result.output and "didi_test_plugin" in result.output
    finally:
        pm.unregister(mod)
    assert "dna-test" not in domains()


COMMAND_PLUGIN = '''
import typer

from didi_seq.errors import DidiError
from didi_seq.registry.hookspecs import hookimpl


@hookimpl
def register_commands(app):
    @app.command()
    def greet(name: str = typer.Option("world", help="Who to greet.")):
        """Say hello (a command a plugin added)."""
        if not name:
            raise DidiError("--name is empty")
        typer.echo(f"hello {name}")
'''


def test_plugin_command_runs_through_the_real_cli(tmp_path):
    """register_commands: an installed plugin's command is listed, runs, and fails like a built-in one."""
    import os
    import subprocess

    (tmp_path / "didi_greet.py").write_text(COMMAND_PLUGIN)
    dist = tmp_path / "didi_greet-0.1.dist-info"  # what pip writes; entry points are read from here
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: didi-greet\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[didi_seq]\ngreet = didi_greet\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}

    def didi(*args):
        return subprocess.run([sys.executable, "-m", "didi_seq_cli.main", *args], env=env, capture_output=True, text=True)

    assert "greet" in didi("--help").stdout
    assert "didi-greet 0.1" in didi("plugins").stdout
    ok = didi("greet", "--name", "lambda")
    assert ok.returncode == 0 and ok.stdout == "hello lambda\n", ok.stderr
    bad = didi("greet", "--name", "")
    assert (bad.returncode, bad.stderr) == (2, "error: --name is empty\n")


def test_a_late_plugin_cannot_replace_a_builtin_of_any_hook():
    """First registration wins for every hook: a third-party plugin reusing the name of a built-in domain,
    teacher format, scorer, sampler or method is ignored, never silently swapped in (pluggy calls the
    newest plugin first, so keeping the first object *called* would let the impostor win)."""
    from dataclasses import replace

    from didi_seq.registry.plugins import methods, samplers, scorers, teacher_formats

    builtin = {"domain": domains()["text"], "format": next(f for f in teacher_formats() if f.name == "native"),
               "scorer": next(s for s in scorers() if s.name == "entropy"), "sampler": samplers()["ancestral"],
               "method": methods()["didi-instruct"]}
    impostors = {k: replace(v, description="impostor") for k, v in builtin.items()}
    mod = types.ModuleType("didi_test_impostor")
    mod.register_domains = hookimpl(lambda register: register(impostors["domain"]))
    mod.register_teacher_formats = hookimpl(lambda register: register(impostors["format"]))
    mod.register_scorers = hookimpl(lambda register: register(impostors["scorer"]))
    mod.register_samplers = hookimpl(lambda register: register(impostors["sampler"]))
    mod.register_methods = hookimpl(lambda register: register(impostors["method"]))
    pm = get_plugin_manager()
    pm.register(mod, name="didi_test_impostor")
    try:
        found = {"domain": domains()["text"], "format": [f for f in teacher_formats() if f.name == "native"],
                 "scorer": [s for s in scorers("text") if s.name == "entropy"], "sampler": samplers("text")["ancestral"],
                 "method": methods()["didi-instruct"]}
        assert found["format"] == [builtin["format"]] and found["scorer"] == [builtin["scorer"]]
        for kind in ("domain", "sampler", "method"):
            assert found[kind].description == builtin[kind].description != "impostor", kind
    finally:
        pm.unregister(mod)
