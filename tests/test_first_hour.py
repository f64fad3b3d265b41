"""A new user's first hour (issue 17): CLI conventions, hub commands, the common sample key,
model cards, TensorBoard logging and the plugin kit."""

import json

import pytest
from typer.testing import CliRunner

from didi_seq_cli.main import app

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


# -- hub messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("scripts", "expected"), [
    ({"hf", "tiny-agents"}, "hf download owner/name model.safetensors --revision abc"),
    ({"huggingface-cli"}, "huggingface-cli download owner/name model.safetensors --revision abc"),
    (set(), "huggingface-cli download owner/name model.safetensors --revision abc"),
])
def test_download_command_names_the_installed_cli(monkeypatch, scripts, expected):
    from didi_seq import hub

    monkeypatch.setattr(hub, "_console_scripts", lambda: scripts)
    assert hub.download_command("owner/name", "model.safetensors", revision="abc") == expected
    assert hub.download_command("owner/name") == expected.split(" model")[0]


def test_installed_hub_provides_the_command_we_name():
    """The name comes from the installed package's metadata: it is one of its console scripts."""
    from importlib.metadata import distribution

    from didi_seq.hub import hub_cli

    scripts = {ep.name for ep in distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    assert hub_cli() in scripts


def test_cache_miss_error_names_the_hub_command(monkeypatch):
    from didi_seq import hub

    monkeypatch.setattr(hub, "_console_scripts", lambda: {"hf"})
    r = invoke("sample", "--domain", "text", "--checkpoint", "test-org/not-cached@v1", "--nfe", 2)
    assert r.exit_code != 0 and "`hf download test-org/not-cached --revision v1`" in r.stderr


# -- one decoded-sample key -----------------------------------------------------------------------


def test_every_record_carries_decoded_and_the_domain_alias(tiny_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 2, "--num-samples", 2,
               "--threads", 1, "--output", out)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(isinstance(rec["decoded"], str) and rec["decoded"] == rec["text"] for rec in recs)


@pytest.mark.parametrize("key", ["decoded", "text"])
def test_evaluate_reads_records_with_either_key(tmp_path, key):
    from didi_seq.evaluate import load_samples
    from didi_seq.plugins import get_domain

    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({key: "hello world", "nfe": 4}) + "\n")
    (rec,) = load_samples([f], get_domain("text"))
    assert rec["text"] == rec["decoded"] == "hello world"


def test_with_decoded_keeps_both_when_present():
    from didi_seq.sample_io import with_decoded

    assert with_decoded({"sequence": "MKV"}, "sequence") == {"sequence": "MKV", "decoded": "MKV"}
    assert with_decoded({"decoded": "a", "text": "b"}, "text") == {"decoded": "a", "text": "b"}
