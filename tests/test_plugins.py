import importlib.metadata
import sys
import types

from typer.testing import CliRunner

from didi_seq.domain import Domain
from didi_seq.hookspecs import hookimpl
from didi_seq.plugins import domains, get_plugin_manager


def test_text_domain_found_through_entry_point():
    eps = importlib.metadata.entry_points(group="didi_seq")
    assert "text" in {ep.name for ep in eps}
    pm = get_plugin_manager()
    dists = {pm.get_name(p): d.project_name for p, d in pm.list_plugin_distinfo()}
    assert dists.get("text") == "didi-seq"
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
