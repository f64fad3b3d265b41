"""A third-party sampler registered through ``register_samplers``, as a plugin package would:
it is listed by ``didi-seq plugins`` and runs through ``didi-seq sample --sampler NAME``."""

import json
import sys
import types
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq import SampleResult, option
from didi_seq.registry.hookspecs import hookimpl
from didi_seq.registry.plugins import get_plugin_manager, samplers
from didi_seq.sampling.contract import SamplerOptions, tempered
from didi_seq_cli.main import app


@dataclass(kw_only=True)
class OneShotConfig(SamplerOptions):
    # declared like any sampler option: `didi-seq sample` gets the flag, its help line and its checks for free
    label: str = option("one", "Toy: a label each record carries.", flag="--one-shot-label")

    def record(self) -> dict:
        return {"label": self.label}


class OneShot:
    """Reveal every position at once: one network call, a draw from p(x0 | all masked) (a toy)."""

    name, description, config, domains = "one-shot", "toy: reveal everything in one step", OneShotConfig, ("text",)

    def sample(self, adapter, x_init, cfg, generator, on_step=None):
        x = x_init.clone()
        masked = x == adapter.spec.mask_id
        lp = tempered(adapter.masked_log_probs(x, torch.ones(len(x)), masked), cfg.temperature)
        x[masked] = torch.multinomial(lp.double().exp(), 1, generator=generator).squeeze(-1)
        for _ in range(cfg.nfe):
            if on_step:
                on_step()
        return SampleResult(x, network_calls=1, rows_evaluated=len(x), nfe=cfg.nfe, wall_clock_s=0.0)


@pytest.fixture
def toy_plugin():
    mod = types.ModuleType("didi_toy_sampler")

    @hookimpl
    def register_samplers(register):
        register(OneShot())

    mod.register_samplers = register_samplers
    sys.modules[mod.__name__] = mod
    pm = get_plugin_manager()
    pm.register(mod, name=mod.__name__)
    yield mod
    pm.unregister(mod)
    del sys.modules[mod.__name__]


def test_toy_sampler_is_listed_and_runs(toy_plugin, tiny_ckpt, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["plugins"], terminal_width=200)
    assert listing.exit_code == 0 and "one-shot (text)" in listing.output and "didi_toy_sampler" in listing.output
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(tiny_ckpt), "--sampler", "one-shot", "--nfe", "3",
                            "--num-samples", "3", "--batch-size", "2", "--temperature", "0.5", "--output", str(out)])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["sampler"], x["nfe"], x["temperature"]) for x in recs] == [("one-shot", 3, 0.5)] * 3
    assert recs[0]["run"]["network_calls"] == 2  # one per batch of 2 + 1
    assert all(len(x["tokens"]) == 16 for x in recs)
    # its domains are respected: no one-shot for protein
    r = runner.invoke(app, ["sample", "--domain", "protein", "--sampler", "one-shot", "--nfe", "2"])
    assert r.exit_code != 0 and "unknown or unavailable sampler 'one-shot'" in r.stderr


def test_unregistered_toy_is_gone(toy_plugin):
    assert "one-shot" in samplers("text")
    get_plugin_manager().unregister(toy_plugin)
    try:
        assert "one-shot" not in samplers("text")
    finally:
        get_plugin_manager().register(toy_plugin, name=toy_plugin.__name__)


def test_generate_refuses_another_samplers_config(tiny_ckpt):
    from didi_seq.errors import DidiError
    from didi_seq.registry.plugins import get_domain
    from didi_seq.sampling.ancestral import SamplerConfig
    from didi_seq.sampling.generate import generate, load_model

    model = load_model(get_domain("text"), str(tiny_ckpt))
    with pytest.raises(DidiError, match="'rgas' takes a RGASConfig, not a SamplerConfig"):
        generate(model, SamplerConfig(nfe=2), sampler="rgas")
    out = generate(model, SamplerConfig(nfe=2, temperature=0.5), num_samples=3, batch_size=2)
    assert out.result.tokens.shape == (3, 16) and [r["temperature"] for r in out.records] == [0.5] * 3


def test_a_samplers_declared_options_are_its_flags_and_no_one_elses(toy_plugin, tiny_ckpt, tmp_path):
    runner = CliRunner()
    assert "--one-shot-label STR" in runner.invoke(app, ["sample", "--help"], terminal_width=200).output
    out = tmp_path / "s.jsonl"
    base = ["sample", "--domain", "text", "--checkpoint", str(tiny_ckpt), "--nfe", "2", "--num-samples", "1"]
    r = runner.invoke(app, [*base, "--sampler", "one-shot", "--one-shot-label", "two", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["one-shot"] == {"label": "two"}
    one_error_line(runner.invoke(app, [*base, "--one-shot-label", "two"]),
                   "--one-shot-label is an option of --sampler one-shot, not of --sampler ancestral")
    one_error_line(runner.invoke(app, [*base, "--candidates", "4"]),
                   "--candidates is an option of --sampler rgas, not of --sampler ancestral")
    one_error_line(runner.invoke(app, [*base, "--sampler", "one-shot", "--no-cache"]),
                   "--no-cache is an option of --sampler ancestral / dilated / rgas, not of --sampler one-shot")


def test_the_python_api_refuses_an_option_the_sampler_does_not_take():
    from didi_seq.errors import DidiError
    from didi_seq.sampling.generate import sampler_config

    assert sampler_config("rgas", "text", nfe=4, candidates=2).candidates == 2
    with pytest.raises(DidiError, match="sampler 'ancestral' takes no option 'candidates'"):
        sampler_config("ancestral", "text", nfe=4, candidates=2)
