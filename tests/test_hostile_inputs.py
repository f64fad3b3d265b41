"""Issue 16's reproductions, as a hostile user would try them: every case is one ``error:`` line,
a non-zero exit, no traceback and no file changed (``fails_cleanly``), or, where the input is
legitimate, a result that destroys nothing.

Uses the harness of test_bad_inputs.py (the ``work`` fixture: a good tiny checkpoint and a
precious file). Special files are made inside the test's temporary directory (``os.mknod``
needs root, ``os.mkfifo`` does not); nothing here touches /dev.
"""

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_bad_inputs as harness
import torch

from conftest import one_error_line
from didi_seq.errors import DidiError

FAST_DISTILL, broken_copy, fails_cleanly, invoke = harness.FAST_DISTILL, harness.broken_copy, harness.fails_cleanly, harness.invoke
sample_into_precious, snapshot = harness.sample_into_precious, harness.snapshot
work, tiny_student = harness.work, harness.tiny_student  # the fixtures, shared

IS_ROOT = os.geteuid() == 0
PRECIOUS = '{"text": "keep me"}\n'


def special_file(path: Path, kind: str) -> Path:
    """A FIFO, or (as root) a character device with /dev/null's or /dev/zero's numbers, at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        if not IS_ROOT:
            pytest.skip("creating a device node needs root")
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, {"null": 3, "zero": 5}[kind]))
    return path


# -- outputs: never destroy a user's file -------------------------------------------------------


@pytest.mark.parametrize("kind", ["null", "fifo"])
def test_output_onto_a_device_or_fifo_is_refused(work, kind):
    node = special_file(work / "mynode", kind)
    fails_cleanly(work, sample_into_precious(work, work / "good")[:-2] + ["--output", node], "not a regular file")
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--output", node,
                         "--reference-samples", 0], "not a regular file")
    assert not stat.S_ISREG(os.lstat(node).st_mode)


@pytest.mark.parametrize("target", ["dir", ".", ""])
def test_output_that_is_a_directory(work, target, monkeypatch):
    monkeypatch.chdir(work)
    (work / "dir").mkdir()
    fails_cleanly(work, sample_into_precious(work, work / "good")[:-2] + ["--output", target], "directory")


def test_output_onto_an_input_or_into_a_checkpoint(work):
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "precious.jsonl", "--output",
                         work / "precious.jsonl", "--reference-samples", 0], "is one of this command's inputs")
    for name in ("model.safetensors", "new.jsonl"):
        fails_cleanly(work, sample_into_precious(work, work / "good")[:-2] + ["--output", work / "good" / name],
                      "inside the checkpoint directory")


def test_output_through_a_symlink_replaces_the_file_it_points_to(work):
    (work / "link.jsonl").symlink_to(work / "precious.jsonl")
    r = invoke(*sample_into_precious(work, work / "good")[:-2], "--output", work / "link.jsonl")
    assert r.exit_code == 0, r.output
    assert (work / "link.jsonl").is_symlink() and "keep me" not in (work / "precious.jsonl").read_text()


def test_killed_write_debris_is_cleaned_by_the_next_write(work):
    dead = work / ".precious.jsonl.tmp-999999999-abc"  # above any pid_max: a writer that died
    live = work / f".precious.jsonl.tmp-{os.getpid()}-abc"  # a writer still running
    dead.write_text("half"), live.write_text("busy")
    r = invoke(*sample_into_precious(work, work / "good"))
    assert r.exit_code == 0, r.output
    assert not dead.exists() and live.exists()


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_sampling_or_evaluating(work, monkeypatch):
    monkeypatch.setattr(os, "fsync", _enospc)
    fails_cleanly(work, sample_into_precious(work, work / "good"), "No space left on device")
    (work / "s.jsonl").write_text('{"text": "a b c"}\n')
    (work / "r.json").write_text("{}\n")
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "s.jsonl", "--output", work / "r.json",
                         "--reference-samples", 0, "--metrics", "entropy"], f"cannot write {work / 'r.json'}")


def test_disk_full_while_pretraining(work, monkeypatch):
    corpus = work / "c.txt"
    corpus.write_text("".join(f"line {i} of a small corpus: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    monkeypatch.setattr(os, "fsync", _enospc)
    r = invoke("pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--corpus", corpus, "--out", work / "run",
               "--threads", 1)
    one_error_line(r, "No space left on device")
    assert not (work / "run" / "LATEST").exists()
    assert not [p for p in (work / "run" / "checkpoints").iterdir()]  # no checkpoint, no temporary directory


def test_all_outputs_or_none(tmp_path, monkeypatch):
    """A failure while writing the second file leaves the first untouched and no temporary behind."""
    from didi_seq.io import outputs

    (tmp_path / "a.jsonl").write_text("old a\n")
    calls = []
    real = outputs.write_temp

    def second_fails(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise DidiError(f"cannot write {path}: No space left on device")
        return real(path, data)

    monkeypatch.setattr(outputs, "write_temp", second_fails)
    with pytest.raises(DidiError, match="No space left"):
        outputs.write_all([(tmp_path / "a.jsonl", b"new a\n"), (tmp_path / "a.fasta", b">new\n")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]
    assert (tmp_path / "a.jsonl").read_text() == "old a\n"


def test_sibling_names_never_collide(tmp_path):
    from didi_seq.io.outputs import plan_outputs

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKV\n")
    assert plan_outputs(tmp_path / "s.jsonl", [".fasta"]) == [tmp_path / "s.jsonl", tmp_path / "s.fasta"]
    assert plan_outputs(tmp_path / "s.fasta", [".fasta"])[1] == tmp_path / "s.fasta.fasta"
    assert plan_outputs(tmp_path / "in.jsonl", [".fasta"], [fasta])[1] == tmp_path / "in.jsonl.fasta"
    (tmp_path / "d.fasta").mkdir()
    assert plan_outputs(tmp_path / "d.jsonl", [".fasta"])[1] == tmp_path / "d.jsonl.fasta"


PROTEIN = ["sample", "--domain", "protein", "--nfe", 2, "--num-samples", 2, "--threads", 1]


def test_protein_sampling_keeps_its_inputs_and_its_own_outputs_apart(tmp_path):
    """--lengths in.fasta --output in.jsonl must not replace in.fasta; --output s.fasta must not be
    overwritten by its own FASTA sibling."""
    from didi_seq_protein.fasta import read_fasta

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nMKTAYIA\n")
    before = fasta.read_bytes()
    r = invoke(*PROTEIN, "--lengths", fasta, "--output", tmp_path / "in.jsonl")
    assert r.exit_code == 0, r.output
    assert fasta.read_bytes() == before
    assert len(read_fasta(tmp_path / "in.jsonl.fasta")) == 2
    r = invoke(*PROTEIN, "--lengths", "5,6", "--output", tmp_path / "s.fasta")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (tmp_path / "s.fasta").read_text().splitlines()]
    assert [len(rec["sequence"]) for rec in records] == [5, 6]
    assert [s for _, s in read_fasta(tmp_path / "s.fasta.fasta")] == [rec["sequence"] for rec in records]


def test_protein_length_list_longer_than_a_file_name(tmp_path):
    lengths = ",".join(["5"] * 130)  # 259 characters: more than a file name may hold
    r = invoke(*PROTEIN[:-4], "--num-samples", 1, "--threads", 1, "--lengths", lengths, "--output", tmp_path / "s.jsonl")
    assert r.exit_code == 0, r.output
    (tmp_path / "keep").write_text("x")
    fails_cleanly(tmp_path, [*PROTEIN, "--lengths", "x" * 300], "--lengths")


# -- untrusted checkpoints --------------------------------------------------------------------


def edit_config(section, **values):
    def edit(d):
        cfg = json.loads((d / "config.json").read_text())
        (cfg[section] if section else cfg).update(values)
        (d / "config.json").write_text(json.dumps(cfg))
    return edit


@pytest.mark.parametrize(("section", "values", "fragment"), [
    ("model", {"layers": 1_000_000_000}, "describes a network of"),
    ("model", {"heads": 0}, "heads must be"),
    ("model", {"hidden": "32"}, "hidden must be"),
    ("model", {"hidden": -32}, "hidden must be"),
    ("model", {"cond_dim": -1}, "cond_dim must be"),
    ("model", {"dropout": "x"}, "dropout must be"),
    ("model", {"pad_id": "x"}, "pad_id must be"),
    ("model", {"length": 8}, "exceeds the model's length"),
    ("spec", {"max_length": 0}, "max_length must be"),
    ("spec", {"max_length": -3}, "max_length must be"),
    ("spec", {"never_emit": [1e9]}, "never_emit entry must be"),
    ("spec", {"mask_id": True}, "mask_id must be"),
    ("schedule", {"eps": 2}, "eps must be a number in (0, 1)"),
    ("schedule", {"eps": -1}, "eps must be a number in (0, 1)"),
    ("schedule", {"eps": float("nan")}, "eps must be a number in (0, 1)"),
    (None, {"schedule": [1, 2]}, "schedule must be an object"),
])
def test_bad_config_values(work, section, values, fragment):
    bad = broken_copy(work, "bad", edit_config(section, **values))
    fails_cleanly(work, sample_into_precious(work, bad), fragment)


def test_malformed_provenance(work):
    for content, fragment in (("{bad", "provenance.json is not valid JSON"), ("[1]", "expected an object")):
        bad = broken_copy(work, f"prov{len(content)}", lambda d, c=content: (d / "provenance.json").write_text(c))
        fails_cleanly(work, sample_into_precious(work, bad), fragment)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
@pytest.mark.parametrize("kind", ["zero", "fifo"])
def test_metadata_that_is_not_a_regular_file(work, name, kind):
    """A config or tokenizer symlinked to a never-ending file is refused before it is read."""
    node = special_file(work / "endless", kind)

    def link(d):
        (d / name).unlink()
        (d / name).symlink_to(node)

    bad = broken_copy(work, "endless_ckpt", link)
    fails_cleanly(work, sample_into_precious(work, bad), "not a regular file")


def test_read_bounded_caps_the_size(tmp_path):
    from didi_seq.io.untrusted import read_bounded

    (tmp_path / "big.json").write_bytes(b" " * 2048)
    assert len(read_bounded(tmp_path / "big.json", limit=2048)) == 2048
    with pytest.raises(DidiError, match="larger than"):
        read_bounded(tmp_path / "big.json", limit=1024)


@pytest.mark.parametrize("latest", [b"..", b"../..\n", b"\x00\xff\xfe", b"/etc", b"", b"step_9999999"])
def test_latest_may_only_name_a_checkpoint_of_its_run(work, latest):
    run = work / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(work / "good", run / "checkpoints" / "step_0000001")
    (run / "LATEST").write_bytes(latest)
    fails_cleanly(work, sample_into_precious(work, run), "LATEST")


def test_zero_byte_training_state(work, tiny_student):
    run = work / "run"
    shutil.copytree(tiny_student, run)
    next((run / "checkpoints").glob("step_*")).joinpath("training_state.pt").write_bytes(b"")
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", tiny_student.parent / "teacher", "--out", run,
                         "--steps", 3, "--resume"], "cannot resume from")


def test_pretrain_resume_of_a_distill_run(work, tiny_student):
    run = work / "run"
    shutil.copytree(tiny_student, run)
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--out", run, "--steps", 3, "--resume"],
                  "is a distill run, not a pretrain run")
    for ckpt in (run / "checkpoints").glob("step_*"):  # the same run relabelled as a pretrain run
        edit_config(None, kind="teacher")(ckpt)
    fails_cleanly(work, ["distill", "--domain", "text", "--teacher", tiny_student.parent / "teacher", "--out", run,
                         "--steps", 3, "--resume"], "is a pretrain run, not a distill run")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_dplm_directory_with_a_refused_pickle(work, monkeypatch):
    d = work / "dplm"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "esm", "vocab_size": 33, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 8, "max_position_embeddings": 40, "pad_token_id": 1, "mask_token_id": 32}))
    torch.save({"x": _Evil()}, d / "pytorch_model.bin")
    monkeypatch.chdir(work)
    fails_cleanly(work, ["sample", "--domain", "protein", "--nfe", 2, "--num-samples", 1, "--checkpoint", d],
                  "cannot load")
    assert not (work / "pwned-by-pickle").exists()


# -- numbers --------------------------------------------------------------------------------------


def test_more_samples_than_memory_holds(work):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--num-samples", 10**8), "at most 1048576")


def test_more_rgas_candidates_than_it_scores_at_once(work):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--sampler", "rgas", "--candidates", 10**9), "at most 1024")


def test_nfe_beyond_what_the_schedule_resolves(work):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--nfe", 10**12), "more steps than the noise schedule can resolve")


@pytest.mark.parametrize(("option", "value"), [
    ("--guidance-start", "nan"), ("--guidance-start", "inf"), ("--guidance-end", "-inf"), ("--rerank-ratio", "nan")])
def test_rgas_options_must_be_finite(work, option, value):
    fails_cleanly(work, sample_into_precious(work, work / "good", "--sampler", "rgas", option, value), option)


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_learning_rates_must_be_finite_and_positive(work, value):
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--lr", value, "--out", work / "o"], "--lr")
    for option in ("--student-lr", "--disc-lr"):
        fails_cleanly(work, ["distill", "--domain", "text", option, value, "--out", work / "o"], option)


@pytest.mark.parametrize(("name", "value"), [("WORLD_SIZE", "abc"), ("WORLD_SIZE", "-2"), ("LOCAL_RANK", "x")])
def test_torchrun_environment_that_is_not_a_number(work, name, value, monkeypatch):
    monkeypatch.setenv(name, value)
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--out", work / "o"], name)


# -- data files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "fragment"), [
    ('{"text": "a b", "seed": [1]}', "'seed' must be an integer"),
    ('{"text": "a b", "seed": NaN}', "'seed' must be an integer"),
    ('{"text": "a b", "tokens": [1, NaN]}', "'tokens' must be"),
    ('{"text": "a b", "tokens": [-1]}', "'tokens' must be"),
    ('{"text": "a b", "seed": 1}\n{"text": "a b", "seed": "x"}', "line 2: 'seed' must be an integer"),
    ('{"text": "a \\ud800 b"}', "not valid Unicode"),
    ('{"text": "a b", "tokens": [' + "9" * 5000 + "]}", "not usable JSON"),
    ('{"text": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"text": "a b", "run": {"num_samples": "x"}}', "run.num_samples must be"),
    ('{"text": "a b", "run": [1]}', "'run' must be an object"),
])
def test_hostile_evaluate_records(work, line, fragment):
    (work / "s.jsonl").write_text(line + "\n")
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "s.jsonl", "--reference-samples", 0,
                         "--output", work / "precious.jsonl"], fragment)


def test_samples_that_are_invalid_utf8(work):
    (work / "s.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "s.jsonl"], "is not UTF-8")


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("c.jsonl", b'{"text": 5}\n' * 10, "'text' column holds int64 values"),
    ("c.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n', "line 2 is not UTF-8"),
    ("c.txt", b"fine\ncaf\xe9\n", "line 2 is not UTF-8"),
])
def test_hostile_corpus(work, name, content, fragment):
    (work / name).write_bytes(content)
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--corpus", work / name,
                         "--out", work / "o"], fragment)


# -- run directories -------------------------------------------------------------------------------


def test_pretrain_out_is_an_existing_file(work):
    fails_cleanly(work, ["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1, "--out", work / "precious.jsonl"],
                  "exists and is not a directory")


HOLD = """
import sys, time
from didi_seq.training.run_dir import exclusive_run
with exclusive_run(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_run_per_directory(work):
    """A second run into a directory another process trains in fails at once, naming that process;
    once the holder is killed (SIGKILL: no cleanup runs) the directory is free again."""
    run = work / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["pretrain", "--domain", "text", "--preset", "tiny", "--steps", 1],
                        ["distill", "--domain", "text", "--teacher", work / "good", "--steps", 1, *FAST_DISTILL]):
            fails_cleanly(work, [*command, "--out", run], f"is in use by another training run (pid {holder.pid})")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    from didi_seq.training.run_dir import exclusive_run

    with exclusive_run(run):  # the kernel released the dead holder's lock
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    assert not (run / ".lock").exists()


def test_lock_leaves_no_trace_when_a_run_fails_early(work):
    from didi_seq.training.run_dir import exclusive_run

    before = snapshot(work)
    with pytest.raises(RuntimeError), exclusive_run(work / "new_run"):
        raise RuntimeError("the run failed before writing anything")
    assert snapshot(work) == before


def test_permission_denied_on_an_input(work, monkeypatch):
    """Root reads through permission bits, so the refusal is injected where the file is read."""
    import builtins

    real = builtins.open

    def denied(file, *args, **kwargs):  # samples files are read line by line through open()
        if str(file).endswith("s.jsonl"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real(file, *args, **kwargs)

    (work / "s.jsonl").write_text('{"text": "a b"}\n')
    monkeypatch.setattr(builtins, "open", denied)
    fails_cleanly(work, ["evaluate", "--domain", "text", "--samples", work / "s.jsonl", "--reference-samples", 0],
                  f"cannot read samples file {work / 's.jsonl'}: Permission denied")


@pytest.mark.parametrize("kw", [{"layers": 1}, {"layers": 3, "mlp_ratio": 3, "pad_id": 5, "time_conditioning": True}])
def test_parameter_arithmetic_matches_a_built_dit(kw):
    """The size check counts parameters without building the network: it must agree with a real DiT."""
    from didi_seq.models.dit import DiT, DiTConfig

    cfg = DiTConfig(vocab_size=50, length=8, hidden=16, heads=2, cond_dim=8, **kw)
    state = DiT(cfg).state_dict()
    assert cfg.parameter_shapes() == {k: tuple(v.shape) for k, v in state.items()}
    assert cfg.num_parameters() == sum(v.numel() for v in state.values())


def test_a_missing_layer_is_named_before_the_network_is_built(work):
    def drop_block(d):
        from safetensors.torch import load_file, save_file

        state = load_file(str(d / "model.safetensors"))
        save_file({k: v for k, v in state.items() if not k.startswith("blocks.0.mlp")}, str(d / "model.safetensors"))

    bad = broken_copy(work, "dropped", drop_block)
    fails_cleanly(work, sample_into_precious(work, bad), "4 missing keys: blocks.0.mlp")


@pytest.mark.slow
def test_two_pretrain_runs_into_one_directory(work):
    """The issue's reproduction with real runs: the second one fails at once, naming the first's pid,
    and the first one's log is not interleaved with another run's steps."""
    run, corpus = work / "run", work / "c.txt"
    corpus.write_text("".join(f"line {i} of a small corpus: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "didi_seq_cli.main", "pretrain", "--domain", "text", "--preset", "tiny",
                              "--steps", "100000", "--corpus", str(corpus), "--out", str(run), "--threads", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():  # the first run holds the lock and is training
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.05)
        r = invoke("pretrain", "--domain", "text", "--preset", "tiny", "--steps", 2, "--corpus", corpus, "--out", run,
                   "--threads", 1)
        one_error_line(r, f"in use by another training run (pid {first.pid})")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]
    assert steps == list(range(1, len(steps) + 1))


@pytest.mark.parametrize(("key", "value"), [("num_hidden_layers", 1_000_000_000), ("intermediate_size", 1 << 30)])
def test_dplm_config_that_does_not_describe_its_weights(work, key, value, monkeypatch):
    from protein_models import save_tiny_dplm

    dplm = save_tiny_dplm(work / "dplm")
    cfg = json.loads((dplm / "config.json").read_text())
    cfg[key] = value
    (dplm / "config.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(work)
    fails_cleanly(work, ["sample", "--domain", "protein", "--nfe", 2, "--num-samples", 1, "--checkpoint", dplm, "--lengths", 5],
                  f"config.json does not describe these weights: {key.split('_')[0]}")
