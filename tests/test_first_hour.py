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
    from didi_seq.io import hub

    monkeypatch.setattr(hub, "_console_scripts", lambda: scripts)
    assert hub.download_command("owner/name", "model.safetensors", revision="abc") == expected
    assert hub.download_command("owner/name") == expected.split(" model")[0]


def test_installed_hub_provides_the_command_we_name():
    """The name comes from the installed package's metadata: it is one of its console scripts."""
    from importlib.metadata import distribution

    from didi_seq.io.hub import hub_cli

    scripts = {ep.name for ep in distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    assert hub_cli() in scripts


def test_cache_miss_error_names_the_hub_command(monkeypatch):
    from didi_seq.io import hub

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
    assert all(isinstance(rec["decoded"], str) and rec["decoded"] == rec["text"].replace("<|endoftext|>", "")
               for rec in recs)


@pytest.mark.parametrize("key", ["decoded", "text"])
def test_evaluate_reads_records_with_either_key(tmp_path, key):
    from didi_seq.evaluation.harness import load_samples
    from didi_seq.registry.plugins import get_domain

    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({key: "hello world", "nfe": 4}) + "\n")
    (rec,) = load_samples([f], get_domain("text"))
    assert rec["text"] == rec["decoded"] == "hello world"


def test_with_decoded_keeps_both_when_present():
    from didi_seq.io.samples import with_decoded

    assert with_decoded({"sequence": "MKV"}, "sequence") == {"sequence": "MKV", "decoded": "MKV"}
    assert with_decoded({"decoded": "a", "text": "b"}, "text") == {"decoded": "a", "text": "b"}


# -- CLI conventions --------------------------------------------------------------------------------


def test_sample_output_dash_is_jsonl_on_stdout_and_nothing_else(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 2, "--num-samples", 3, "--threads", 1,
               "--output", "-")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]  # every stdout line is a record: no progress bar
    assert [rec["index"] for rec in recs] == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []  # no file named '-'
    assert "3 samples, NFE 2" in r.stderr and "sample" in r.stderr  # summary and progress went to stderr


def test_protein_output_dash_writes_no_fasta(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("sample", "--domain", "protein", "--checkpoint", "teacher", "--nfe", 2, "--num-samples", 2,
               "--lengths", 12, "--threads", 1, "--output", "-")
    assert r.exit_code == 0, r.output
    assert all(len(json.loads(line)["decoded"]) == 12 for line in r.stdout.splitlines())
    assert list(tmp_path.iterdir()) == []


def test_status_and_progress_on_stderr_and_quiet_silences_them(tiny_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    args = ["sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 2, "--num-samples", 2, "--threads", 1]
    r = invoke(*args, "--output", out)
    assert r.exit_code == 0 and r.stdout == "" and "wrote" in r.stderr
    r = invoke("--quiet", *args, "--output", out)
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = invoke("-q", *args)  # results still print
    assert r.exit_code == 0 and r.stdout.count("--- sample") == 2 and r.stderr == ""


def test_no_wrapping_when_not_a_terminal(capsys):
    from didi_seq_cli.console import console, set_quiet

    set_quiet(False)  # the CLI sets it on every invocation; a direct call sees the last one's
    long = " ".join(f"value{i} 0.603 s/sample" for i in range(40))
    console().print(long)
    console(stderr=True).print(long)
    captured = capsys.readouterr()
    assert captured.out == long + "\n" and captured.err == long + "\n"


def test_version_completion_and_python_m():
    import subprocess
    import sys

    from didi_seq import __version__

    assert invoke("--version").stdout.strip() == f"didi-seq {__version__}"
    assert "--install-completion" in invoke("--help", terminal_width=200).stdout
    for module in ("didi_seq", "didi_seq_cli"):
        r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == f"didi-seq {__version__}", r.stderr


@pytest.mark.parametrize(("command", "shown"), [
    ("distill", ["didi-instruct: 400", "[default: 20]", "≈ 33 min", "--disc-warmup-steps", "--allow-no-student-steps"]),
    ("pretrain", ["small 2000", "≈ 50 min", "[default: runs/pretrain]"]),
    ("sample", ["[default: ancestral]", "half the cores"]),
])
def test_help_shows_defaults_and_cost(command, shown):
    text = invoke(command, "--help", terminal_width=200).stdout
    for fragment in shown:
        assert fragment in text, fragment


def test_threads_env_var_and_default(monkeypatch, tiny_ckpt):
    from conftest import one_error_line
    from didi_seq.devices import default_threads

    for cores, expected in ((1, 1), (2, 1), (8, 4), (64, 4), (None, 1)):
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert default_threads() == expected
    r = invoke("sample", "--domain", "text", "--checkpoint", tiny_ckpt, "--nfe", 2, env={"DIDI_SEQ_THREADS": "0"})
    one_error_line(r, "--threads must be a positive integer")


# -- distill: a student that never steps ----------------------------------------------------------


def test_distill_refuses_a_run_where_the_student_never_steps(tiny_ckpt, tmp_path):
    from conftest import one_error_line

    r = invoke("distill", "--domain", "text", "--teacher", tiny_ckpt, "--steps", 5, "--out", tmp_path / "run")
    one_error_line(r, "--steps 5 ≤ --disc-warmup-steps 20: the student would never take a step")
    assert not (tmp_path / "run").exists()


def test_check_student_steps():
    from didi_seq.distill.didi_instruct.config import DistillConfig
    from didi_seq.distill.run import check_student_steps, student_steps
    from didi_seq.errors import DidiError

    assert student_steps(DistillConfig(steps=21, disc_warmup_steps=20)) == 1
    assert check_student_steps(DistillConfig(steps=21, disc_warmup_steps=20)) is None
    with pytest.raises(DidiError, match="--allow-no-student-steps"):
        check_student_steps(DistillConfig(steps=20, disc_warmup_steps=20))
    assert "never take a step" in check_student_steps(DistillConfig(steps=3, disc_warmup_steps=20), allow=True)


def test_distill_progress_shows_student_loss_and_discriminator_accuracy():
    from didi_seq_cli.main import distill_progress

    assert distill_progress({"disc_acc": 0.5}) == "D acc 0.50 (discriminator warm-up: student not stepping yet)"
    shown = distill_progress({"disc_acc": 0.75, "loss": -0.1234, "reward": 0.5, "kl": 1e-3, "entropy": 4.2})
    assert shown.startswith("D acc 0.75 student loss -0.123 reward +0.50")


# -- training runs: --out parents, model cards, TensorBoard ------------------------------------------


def _card(checkpoint_dir):
    import yaml

    text = (checkpoint_dir / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def _tiny_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i} of a small corpus for a tiny model\n" for i in range(40)))
    return path


def test_pretrain_creates_out_parents_writes_a_model_card_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "missing" / "deeper" / "run"
    r = invoke("pretrain", "--domain", "text", "--preset", "tiny", "--steps", 2, "--corpus", _tiny_corpus(tmp_path),
               "--threads", 1, "--out", out, "--log", "tensorboard")
    assert r.exit_code == 0, r.output
    assert str(out) in r.stdout and "pretrain" in r.stderr  # the result on stdout, the progress on stderr
    meta, body = _card(out / "checkpoints" / "step_0000002")
    prov = json.loads((out / "checkpoints" / "step_0000002" / "provenance.json").read_text())
    assert meta["library_name"] == "didi-seq" and meta["license"] == "apache-2.0"
    assert {"didi-seq", "masked-diffusion", "text", "teacher"} <= set(meta["tags"])
    assert "base_model" not in meta and "datasets" not in meta  # a local corpus is no hub dataset
    assert meta["didi_seq"]["headline"]["val_nelbo_nats_per_token"] == prov["val_nelbo"]
    assert meta["didi_seq"]["step"] == 2 and "didi-seq sample --domain text" in body
    # TensorBoard mirrors metrics.jsonl: same steps, same loss values
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("loss")] == [(m["step"], m["loss"]) for m in logged]


def test_unknown_log_kind_is_refused(tmp_path):
    from conftest import one_error_line

    r = invoke("pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--out", tmp_path / "a" / "r",
               "--log", "wandb")
    one_error_line(r, "unknown --log 'wandb'; known: tensorboard")
    assert not (tmp_path / "a").exists()  # refused before anything was created


def test_student_card_names_method_teacher_and_base_model(tiny_ckpt, tmp_path):
    out = tmp_path / "student"
    r = invoke("distill", "--domain", "text", "--teacher", tiny_ckpt, "--corpus", _tiny_corpus(tmp_path), "--out", out,
               "--steps", 2, "--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 1, "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "student loss" in r.stderr  # the progress shows it once the student steps
    meta, body = _card(out / "checkpoints" / "step_0000002")
    assert meta["didi_seq"]["method"] == "didi-instruct" and {"distillation", "student"} <= set(meta["tags"])
    assert {"disc_acc", "reward"} <= set(meta["didi_seq"]["headline"]) and "tiny-test@" in body
    assert "base_model" not in meta  # a local teacher is no hub model


def test_card_metadata_for_hub_teacher_and_dataset():
    from didi_seq.io.model_card import metadata

    prov = {"corpus": "openwebtext", "method": "DiDi-Instruct", "step": 10,
            "teacher": {"id": "kuleshov-group/mdlm-owt@abc123", "path": "/cache/models--kuleshov-group--mdlm-owt/x"}}
    meta = metadata({"kind": "student", "domain": "text"}, prov)
    assert meta["base_model"] == "kuleshov-group/mdlm-owt" and meta["datasets"] == ["openwebtext"]
    meta = metadata({"kind": "teacher", "domain": "text"}, {"corpus": "embedded:python3.11-doc"})
    assert "datasets" not in meta and meta["didi_seq"]["method"] == "MDLM NELBO pretraining"


# -- plugin kit -------------------------------------------------------------------------------------


def test_small_preset_takes_the_domains_default_length(tmp_path):
    """A preset that sets no length defers to Domain.default_length (the tiny preset is a fixed test shape)."""
    import dataclasses

    from didi_seq.io.checkpoint import load_checkpoint
    from didi_seq.registry.plugins import get_domain
    from didi_seq.training.pretrain import PretrainConfig, pretrain

    dom = dataclasses.replace(get_domain("text"), default_length=24)
    cfg = PretrainConfig.from_preset("small", steps=1, batch_size=2, eval_batches=1, threads=1,
                                     model={"hidden": 32, "layers": 1, "heads": 2, "cond_dim": 16})
    assert "length" not in cfg.model
    pretrain(dom, tmp_path / "run", cfg, corpus=str(_tiny_corpus(tmp_path)))
    assert load_checkpoint(tmp_path / "run").config["model"]["length"] == 24
    assert PretrainConfig.from_preset("tiny").model["length"] == 32


def test_char_tokenizer_ids_round_trip_and_errors(tmp_path):
    from didi_seq.domain.char_tokenizer import CharTokenizer
    from didi_seq.errors import DidiError

    tok = CharTokenizer("ACGU", upper=True, symbol="base")
    assert (tok.bos_id, tok.eos_id, tok.mask_id, tok.vocab_size) == (4, 4, 5, 6)
    assert tok.encode_batch(["acgu", "UA"]) == [[0, 1, 2, 3], [3, 0]]
    assert tok.decode([0, 1, 4, 3, 5]) == "AC|U?"  # padding/separators are decoded too
    with pytest.raises(DidiError, match="'T' is not a base"):
        tok.encode_batch(["ACT"])
    (tmp_path / "tokenizer.json").write_text(tok.to_json())
    assert CharTokenizer.saved_alphabet(tmp_path / "tokenizer.json") == "ACGU"
    with pytest.raises(DidiError, match="distinct"):
        CharTokenizer("AAB")


def test_length_models_live_in_the_core_and_read_fasta(tmp_path):
    import torch

    from didi_seq.domain.lengths import EmpiricalLengths, parse_lengths

    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nACGT\n>b\nACGTACGT\nAC\n")  # wrapped lines count once: lengths 4 and 10
    model = parse_lengths(str(fasta), 50, corpus_lengths=None)
    assert isinstance(model, EmpiricalLengths) and model.counts == [(4, 1), (10, 1)]
    assert set(model.draw(20, torch.Generator().manual_seed(0))) == {4, 10}


def test_core_imports_no_plugin():
    """didi_seq/ never imports a plugin package (or the CLI), lazily or not."""
    import ast
    from pathlib import Path

    import didi_seq

    for path in Path(didi_seq.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                assert not name.startswith(("didi_seq_text", "didi_seq_protein", "didi_seq_cli")), (path, name)


def test_a_domain_without_embedded_models_suggests_pretrain(monkeypatch):
    import dataclasses

    from conftest import one_error_line
    from didi_seq.registry import plugins

    bare = dataclasses.replace(plugins.get_domain("text"), embedded_teacher=None, embedded_student=None)
    monkeypatch.setattr(plugins, "get_domain", lambda name: bare)
    r = invoke("sample", "--domain", "text", "--nfe", 2)
    one_error_line(r, "ships no embedded teacher; pass a checkpoint path or hub id, or train one: "
                      "`didi-seq pretrain --domain text --out runs/text-teacher`")


@pytest.mark.slow  # a pytest subprocess that pretrains: ~15 s quiet, ~50 s on busy cores
def test_new_plugin_writes_a_skeleton_whose_own_tests_pass(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import one_error_line

    target = tmp_path / "smiles-plugin"
    r = invoke("new-plugin", "smiles", "--alphabet", "CNOS()=#123", "--out", target)
    assert r.exit_code == 0, r.output
    assert (target / "didi_seq_smiles" / "plugin.py").exists() and 'smiles = "didi_seq_smiles.plugin"' in \
        (target / "pyproject.toml").read_text()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
                       cwd=target, env=env, capture_output=True, text=True, timeout=300)
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-2000:]
    assert "3 passed" in t.stdout
    one_error_line(invoke("new-plugin", "smiles", "--out", target), "already exists")
    one_error_line(invoke("new-plugin", "Bad-Name", "--out", tmp_path / "x"), "plugin name 'Bad-Name'")


def test_a_student_card_names_the_method_that_made_it():
    """The card once credited DiDi-Instruct for every student, SDTT's and MMD's included."""
    from didi_seq.io.model_card import render

    prov = {"method": "mmd", "step": 665, "teacher": {"id": "text-teacher@d2e306680f1c", "sha256": "d2e306680f1c"}}
    body = render({"kind": "student", "domain": "text"}, prov)
    assert "with the `mmd` method" in body and "DiDi-Instruct" not in body
    assert "with the `didi-instruct` method" in render({"kind": "student", "domain": "text"}, {**prov, "method": None})
