"""Issue 24's reproductions (hardening, round 2): each finding as a hostile user found it.

The contract is test_bad_inputs.py's: bad input is one ``error:`` line, a non-zero exit, no
traceback and no file changed (``fails_cleanly``); legitimate input destroys nothing.
"""

import json
import os
import shutil

import pytest
import test_bad_inputs as harness
import torch

from didi_seq.errors import DidiError

FAST_DISTILL, broken_copy, fails_cleanly, invoke = harness.FAST_DISTILL, harness.broken_copy, harness.fails_cleanly, harness.invoke
sample_into_precious, snapshot = harness.sample_into_precious, harness.snapshot
work, tiny_student = harness.work, harness.tiny_student  # the fixtures, shared

PRETRAIN = ["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--threads", 1]


# -- destroys data: training output directories ---------------------------------------------------


def _user_dir(work):
    """A user's directory that happens to hold names a run writes."""
    d = work / "mine"
    (d / "checkpoints" / "step_0000001").mkdir(parents=True)
    (d / "checkpoints" / "step_0000001" / "notes.txt").write_text("my notes\n")
    (d / "metrics.jsonl").write_text('{"accuracy": 0.9}\n')
    (d / ".lock").write_text("my lock, not a pid\n")
    return d


@pytest.mark.parametrize("command", ["pretrain", "distill"])
def test_out_into_a_directory_with_foreign_content(work, command):
    d = _user_dir(work)
    args = PRETRAIN if command == "pretrain" else ["distill", "--domain", "text", "--teacher", work / "good", "--steps", 1,
                                                   *FAST_DISTILL]
    fails_cleanly(work, [*args, "--out", d], "which a didi-seq run did not write")
    (d / "checkpoints" / "step_0000001" / "notes.txt").unlink()
    (d / "checkpoints" / "step_0000001").rmdir()
    fails_cleanly(work, [*args, "--out", d], "not a run lock")
    (d / ".lock").unlink()
    fails_cleanly(work, [*args, "--out", d], "not a run's metrics log")  # a user's metrics.jsonl, never appended to
    (d / "metrics.jsonl").unlink()
    (d / "data.txt").write_text("x\n")
    fails_cleanly(work, [*args, "--out", d], "'data.txt'")


def test_out_onto_or_inside_a_checkpoint(work):
    fails_cleanly(work, [*PRETRAIN, "--out", work / "good"], "is the checkpoint directory")
    fails_cleanly(work, [*PRETRAIN, "--out", work / "good" / "sub" / "run"], "lies inside the checkpoint directory")


def test_out_that_is_new_empty_or_a_killed_runs_directory(work):
    """The legitimate cases still train: a new directory, an empty one, and one a run was killed in before
    its first checkpoint (its lock and log lines are ours; the new run's log starts afresh)."""
    from didi_seq.training.run_dir import check_run_dir

    check_run_dir(work / "new" / "run")
    (work / "empty").mkdir()
    check_run_dir(work / "empty")
    killed = work / "killed"
    killed.mkdir()
    (killed / ".lock").write_text("12345\n")
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.9}\n{"st')
    corpus = work / "c.txt"
    corpus.write_text("".join(f"line {i} of a small corpus: the quick brown fox\n" for i in range(100)))
    r = invoke(*PRETRAIN, "--corpus", corpus, "--out", killed)
    assert r.exit_code == 0, r.stderr
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]


def test_evaluate_output_onto_its_reference(work):
    ref = work / "r.jsonl"
    ref.write_text('{"text": "a reference line"}\n')
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--reference", ref,
                         "--metrics", "entropy", "--output", ref], "is one of this command's inputs")


def test_sample_output_onto_the_checkpoints_files(work):
    for name in ("config.json", "provenance.json", "new.jsonl"):
        fails_cleanly(work, sample_into_precious(work, work / "good")[:-2] + ["--output", work / "good" / name],
                      "inside the checkpoint directory")


# -- silently wrong: NaN and empty distributions --------------------------------------------------


def _nan_weights(d):
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    state = {k: torch.full_like(v, float("nan")) if k.startswith("output_layer") else v for k, v in state.items()}
    save_file(state, str(d / "model.safetensors"))


def _never_emit_everything(d):
    config = json.loads((d / "config.json").read_text())
    config["spec"]["never_emit"] = [i for i in range(config["spec"]["vocab_size"]) if i != config["spec"]["mask_id"]]
    (d / "config.json").write_text(json.dumps(config))


def test_temperature_that_overflows_the_logits(work):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--temperature", "5e-324"), "NaN probabilities")


@pytest.mark.parametrize(("edit", "fragment"), [(_nan_weights, "NaN probabilities"),
                                                (_never_emit_everything, "never_emit forbids every token")])
def test_a_checkpoint_that_yields_no_distribution(work, edit, fragment):
    bad = broken_copy(work, "bad", edit)
    fails_cleanly(work, sample_into_precious(work, bad), fragment)
    fails_cleanly(work, sample_into_precious(work, bad, "--final", "greedy"), fragment)


def test_an_empty_distribution_is_refused_at_the_draw():
    """Caught where the draw happens too, for a sampler that forbids tokens itself."""
    from didi_seq.sampling.ancestral import fill

    x, reveal = torch.zeros(1, 3, dtype=torch.long), torch.tensor([[True, False, False]])
    with pytest.raises(DidiError, match="every token probability zero"):
        fill(x, reveal, torch.full((1, 5), float("-inf")), torch.Generator())


def test_samples_left_masked_are_never_written():
    from didi_seq.sampling.contract import check_samples_complete

    check_samples_complete(torch.tensor([[1, 2], [3, 4]]), mask_id=9)
    with pytest.raises(DidiError, match="1 of 2 samples still hold the mask token"):
        check_samples_complete(torch.tensor([[1, 2], [9, 9]]), mask_id=9)


def test_evaluate_refuses_samples_that_still_hold_the_mask(work):
    """A file written before the sampler refused masked outputs (or by hand) is never scored."""
    good = work / "good.jsonl"
    r = invoke("sample", "--domain", "text", "--nfe", 2, "--num-samples", 2, "--checkpoint", "teacher", "--output", good)
    assert r.exit_code == 0, r.stderr
    from didi_seq.registry.plugins import get_domain

    mask = get_domain("text").load_tokenizer(None).mask_id
    recs = [json.loads(line) for line in good.read_text().splitlines()]
    recs[1]["tokens"][3] = mask
    bad = work / "bad.jsonl"
    bad.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", bad, "--metrics", "entropy",
                         "--reference-samples", 0, "--output", work / "e.json"],
                  "1 of 2 samples still hold the mask token (first: sample 1)")
    assert not (work / "e.json").exists()


# -- silently wrong: checkpoint ids from the weights ----------------------------------------------


def _zero_weights(d):
    from safetensors.torch import load_file, save_file

    save_file({k: torch.zeros_like(v) for k, v in load_file(str(d / "model.safetensors")).items()},
              str(d / "model.safetensors"))


def _sample_record(work, ckpt):
    out = work / f"{ckpt.name}.jsonl"
    r = invoke("sample", "--domain", "text", "--nfe", 2, "--num-samples", 1, "--checkpoint", ckpt, "--output", out)
    assert r.exit_code == 0, r.stderr
    return json.loads(out.read_text().splitlines()[0])


def test_checkpoint_id_is_the_hash_of_its_weights(work):
    """Edited weights under the original provenance.json get another id and sha256; a forged (or
    non-string) model_sha256 is never copied into a record."""
    import hashlib

    good = _sample_record(work, work / "good")
    zeroed = broken_copy(work, "zeroed", _zero_weights)
    rec = _sample_record(work, zeroed)
    truth = hashlib.sha256((zeroed / "model.safetensors").read_bytes()).hexdigest()
    assert rec["checkpoint_sha256"] == truth != good["checkpoint_sha256"]
    assert rec["checkpoint"] == f"tiny-test@{truth[:12]}"

    def forge(d, value):
        prov = json.loads((d / "provenance.json").read_text())
        prov["model_sha256"] = value
        (d / "provenance.json").write_text(json.dumps(prov))

    for i, value in enumerate(["0" * 64, 12345]):
        forged = broken_copy(work, f"forged{i}", lambda d, v=value: forge(d, v))
        assert _sample_record(work, forged)["checkpoint_sha256"] == good["checkpoint_sha256"]


def test_weights_hash_is_cached_but_never_stale(tmp_path):
    from didi_seq.io import checkpoint

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 10)
    first = checkpoint.weights_sha256(f)
    assert checkpoint.weights_sha256(f) == first
    f.write_bytes(b"b" * 11)  # rewritten in place: another size (and mtime)
    assert checkpoint.weights_sha256(f) != first


def test_rgas_finds_its_teacher_by_the_verified_hash(work, tiny_student):
    """A teacher whose provenance claims the recorded hash but whose weights differ is not the teacher."""
    from didi_seq.io.checkpoint import resolve_checkpoint_dir
    from didi_seq.models.networks import DISC_CONFIG, load_discriminator
    from didi_seq.registry.plugins import get_domain

    student = work / "student"
    shutil.copytree(resolve_checkpoint_dir(tiny_student), student)
    want = json.loads((student / DISC_CONFIG).read_text())["teacher_sha256"]
    impostor = broken_copy(work, "impostor", _zero_weights)
    for d, edit in ((impostor, lambda p: p.update(model_sha256=want)),
                    (student, lambda p: p["teacher"].update(path=str(impostor)))):
        prov = json.loads((d / "provenance.json").read_text())
        edit(prov)
        (d / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(DidiError, match="which was not found"):
        load_discriminator(student, get_domain("text"))


@pytest.mark.parametrize("value", ["", " "])
def test_empty_checkpoint_name_is_not_the_teacher(work, value):
    fails_cleanly(work, sample_into_precious(work, value), "the checkpoint is an empty name")


# -- one broken plugin breaks nothing else ---------------------------------------------------------

BROKEN_PLUGINS = {
    "raises_at_import": "raise RuntimeError('boom at import')\n",
    "missing_module": "import didi_no_such_module_anywhere\n",
    "exits": "import sys\nsys.exit(0)\n",
    "raises_in_hook": ("from didi_seq.registry.hookspecs import hookimpl\n\n@hookimpl\ndef register_domains(register):\n"
                       "    raise ValueError('boom in a hook')\n"),
    "registers_a_number": ("from didi_seq.registry.hookspecs import hookimpl\n\n@hookimpl\n"
                           "def register_samplers(register):\n    register(42)\n"),
    "raises_in_commands": ("from didi_seq.registry.hookspecs import hookimpl\n\n@hookimpl\n"
                           "def register_commands(app):\n    raise KeyError('boom')\n"),
}


def test_broken_plugins_are_one_warning_each_and_the_rest_works(work):
    """Installed broken plugins (as pip would: a dist-info with entry points): every command still runs,
    each plugin is one warning line naming it, and `sample --domain text` samples."""
    import subprocess
    import sys

    site = work / "site"
    site.mkdir()
    for name, source in BROKEN_PLUGINS.items():
        (site / f"didi_broken_{name}.py").write_text(source)
        dist = site / f"didi_broken_{name}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: didi-broken-{name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[didi_seq]\nbroken_{name} = didi_broken_{name}\n")
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}

    def didi(*args):
        return subprocess.run([sys.executable, "-m", "didi_seq_cli.main", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=300)

    listed = didi("plugins")
    assert listed.returncode == 0, listed.stderr
    assert "text" in listed.stdout and "protein" in listed.stdout
    warnings = [ln for ln in listed.stderr.splitlines() if ln.strip()]
    assert len(warnings) == len(BROKEN_PLUGINS) and all(ln.startswith("warning: plugin 'broken_") for ln in warnings), \
        listed.stderr
    assert "Traceback" not in listed.stderr
    for name, fragment in (("raises_at_import", "boom at import"), ("missing_module", "didi_no_such_module_anywhere"),
                           ("exits", "sys.exit(0)"), ("raises_in_hook", "boom in a hook"),
                           ("registers_a_number", "int '42'"), ("raises_in_commands", "register_commands")):
        assert any(f"'broken_{name}'" in ln and fragment in ln for ln in warnings), (name, warnings)
    sampled = didi("sample", "--domain", "text", "--nfe", 2, "--num-samples", 1, "--checkpoint", work / "good",
                   "--threads", 1)
    assert sampled.returncode == 0 and "--- sample 0 ---" in sampled.stdout, sampled.stderr


# -- unbounded sizes: one error line before any allocation -----------------------------------------


def test_pretrain_batch_beyond_memory(work):
    fails_cleanly(work, [*PRETRAIN, "--batch-size", 1_000_000_000, "--out", work / "run"], "--batch-size 1000000000 needs")


@pytest.mark.parametrize("method, flags, fragment", [
    ("mmd", ["--batch-size", 1_000_000_000], "--batch-size 1000000000 needs"),
    ("didi-instruct", ["--batch-size", 100_000_000, "--group-size", 10, "--disc-warmup-steps", 0],
     "--batch-size 100000000 × --group-size 1000000000 needs"),
])
def test_distill_batch_beyond_memory(work, tiny_ckpt, method, flags, fragment):
    """Refused before the run directory exists: a failing command changes nothing."""
    fails_cleanly(work, ["distill", "--domain", "text", "--method", method, "--teacher", tiny_ckpt, "--steps", 1,
                         "--threads", 1, "--out", work / "run", *flags], fragment)
    assert not (work / "run").exists()


def test_sample_batch_beyond_memory(work, monkeypatch):
    from didi_seq import limits

    monkeypatch.setattr(limits, "physical_memory", lambda: 1 << 20)  # a 1 MiB machine: 4 rows of p(x0) do not fit
    fails_cleanly(work, sample_into_precious(work, work / "good", "--num-samples", 64, "--batch-size", 64),
                  "--batch-size 64 needs")


def test_evaluate_bootstrap_and_batch_bounds(work):
    base = ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--reference-samples", 0]
    fails_cleanly(work, [*base, "--bootstrap", 1_000_000_000], "--bootstrap 1000000000 is above its limit of 100000")
    fails_cleanly(work, [*base, "--judge-batch-size", 10**12], "--judge-batch-size 1000000000000 needs")


@pytest.mark.parametrize("via_env", [False, True])
@pytest.mark.parametrize("threads", [20000, 100000])
def test_threads_beyond_the_cores(work, monkeypatch, threads, via_env):
    extra = []
    if via_env:
        monkeypatch.setenv("DIDI_SEQ_THREADS", str(threads))
    else:
        extra = ["--threads", threads]
    fails_cleanly(work, sample_into_precious(work, work / "good", *extra), f"{threads} is more threads than")


def test_samples_file_and_line_bounds(work, monkeypatch):
    from didi_seq import limits

    long_line = work / "long.jsonl"
    long_line.write_text(json.dumps({"text": "a" * (limits.MAX_RECORD_BYTES + 10)}) + "\n")
    base = ["evaluate", "--domain", "text", "--reference-samples", 0, "--metrics", "entropy", "--samples"]
    fails_cleanly(work, [*base, long_line], "line 1 is longer than 1 MiB")
    monkeypatch.setattr(limits, "max_samples_file_bytes", lambda: 8)
    fails_cleanly(work, [*base, work / "precious.jsonl"], "more than this machine evaluates at once")


@pytest.mark.parametrize("command", ["sample", "pretrain"])
def test_seed_beyond_64_bits(work, command):
    args = sample_into_precious(work, work / "good") if command == "sample" else [*PRETRAIN, "--out", work / "run"]
    fails_cleanly(work, [*args, "--seed", 2**70], f"--seed {2**70} is above its limit")
    fails_cleanly(work, [*args, "--seed", -1], "--seed must be 0 or positive")


# -- the Python API: typed, validated, no misspelt option ignored ----------------------------------


@pytest.fixture(scope="module")
def api_model(tiny_ckpt):
    from didi_seq import MaskedDiffusionModel

    return MaskedDiffusionModel.from_pretrained(tiny_ckpt, domain="text")


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"temprature": 0.01}, TypeError, "'temprature'; it takes: block_length, cache, final, length, schedule"),
    ({"nfe": "16"}, TypeError, "nfe must be an integer"),
    ({"num_samples": 2.0}, TypeError, "num_samples must be an integer"),
    ({"batch_size": 0}, DidiError, "batch_size must be a positive integer"),
    ({"seed": 2**70}, DidiError, "seed 1180591620717411303424 is above its limit"),
    ({"temperature": "hot"}, TypeError, "temperature must be a number"),
])
def test_api_sample_arguments(api_model, kwargs, error, fragment):
    with pytest.raises(error, match=None) as e:
        api_model.sample(**{"nfe": 2, "num_samples": 2, **kwargs})
    assert fragment in str(e.value)


@pytest.mark.parametrize(("call", "error", "fragment"), [
    (lambda m: m.evaluate([{"decoded": 1}], metrics=["entropy"]), DidiError, "record 0 has no string field"),
    (lambda m: m.evaluate("samples.jsonl"), DidiError, "samples must be a list"),
    (lambda m: m.evaluate([{"decoded": "a b"}], metrics="entropy"), TypeError, "metrics must be a list"),
    (lambda m: m.evaluate([{"decoded": "a b"}], judge_batchsize=4), TypeError, "'judge_batchsize'; it takes"),
    (lambda m: m.evaluate([{"decoded": "a b"}], metrics=["entropy"], bootstrap=10**9), TypeError, "'bootstrap'"),
    (lambda m: m.save_pretrained("/dev/null"), DidiError, "exists and is not a directory"),
    (lambda m: m.save_pretrained(42), TypeError, "directory must be a directory path"),
])
def test_api_other_calls(api_model, call, error, fragment):
    with pytest.raises(error) as e:
        call(api_model)
    assert fragment in str(e.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"domain": 123}, r"domain must be a domain name \(str\) or a Domain, got int 123"),
    ({"domain": "text", "use_ema": "yes"}, "use_ema must be True or False"),
])
def test_api_from_pretrained_argument_types(tiny_ckpt, kwargs, fragment):
    from didi_seq.api import MaskedDiffusionModel

    with pytest.raises(TypeError, match=fragment):
        MaskedDiffusionModel.from_pretrained(tiny_ckpt, **kwargs)


def test_api_evaluate_bootstrap_bound(api_model):
    from didi_seq.evaluation.harness import evaluate

    with pytest.raises(DidiError, match="--bootstrap 1000000000 is above its limit"):
        evaluate(api_model.domain, [{"decoded": "a b"}], metrics=["entropy"], reference_samples=0, bootstrap=10**9)


def test_api_save_pretrained_inside_a_checkpoint(api_model, tiny_ckpt):
    with pytest.raises(DidiError, match="lies inside the checkpoint directory"):
        api_model.save_pretrained(tiny_ckpt / "copy")


# -- security (low): model cards and terminal output -----------------------------------------------


def test_model_card_escapes_provenance():
    """provenance.json's name and command cannot inject HTML, headings or table rows into README.md."""
    from didi_seq.io.model_card import render

    card = render({"kind": "student", "domain": "text"},
                  {"name": "x\n# Injected heading <script>alert(1)</script>", "command": "a | b\n| injected | row |",
                   "method": "mmd` <img src=x>", "teacher": {"id": "t\n## also", "sha256": "0" * 64}})
    body = card.split("\n---\n", 1)[1]
    assert "<script>" not in body and "<img" not in body.replace("`mmd' <img src=x>`", "")
    headings = [ln for ln in body.splitlines() if ln.startswith("#")]
    assert headings == ["# x \\# Injected heading &lt;script&gt;alert(1)&lt;/script&gt;", "## Use", "## Training"]
    rows = [ln for ln in body.splitlines() if ln.startswith("|")]
    assert rows == ["| | |", "|---|---|", "| command | a \\| b \\| injected \\| row \\| |"]


HOSTILE_FIELD = "[/bold]\x1b[2J\x1b]0;owned\x07[red]x"


def test_evaluate_prints_markup_and_escapes_literally(work):
    """A samples file whose checkpoint field holds rich markup and terminal escapes: no traceback, nothing
    interpreted; the table shows the text (escape bytes made visible) and --output is still written."""
    samples = work / "s.jsonl"
    samples.write_text("".join(json.dumps({"text": f"a b c {i}", "checkpoint": HOSTILE_FIELD, "seed": 0}) + "\n"
                               for i in range(3)))
    r = invoke("evaluate", "--domain", "text", "--samples", samples, "--reference-samples", 0, "--metrics", "entropy",
               "--output", work / "r.json")
    assert r.exit_code == 0 and r.exception is None, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "[/bold]" in r.stdout and "\\x1b[2J" in r.stdout
    assert json.loads((work / "r.json").read_text())["checkpoint"] == HOSTILE_FIELD


def test_sample_text_with_escapes_is_printed_visibly():
    from didi_seq_cli.console import printable

    assert printable("ok\ttab\nline") == "ok\ttab\nline"
    assert printable("\x1b[31mred\x07") == "\\x1b[31mred\\x07"


def test_stdout_closed_is_one_error_line(work):
    """`didi-seq sample ... >&-`: no traceback, one error line, exit ≠ 0."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "didi_seq_cli.main", "sample", "--domain", "text", "--nfe", "2",
                        "--num-samples", "1", "--checkpoint", str(work / "good"), "--threads", "1"],
                       stderr=subprocess.PIPE, text=True, timeout=300,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "stdout" in lines[0], r.stderr
