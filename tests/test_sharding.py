"""--shard fsdp: FSDP2 over 2 gloo ranks (torchrun, CPU) follows the 1-process trajectory, resumes exactly,
and every checkpoint is a complete directory ``sample`` loads.

The fast tests check the pieces in process (no process group needed); the slow ones (~20 s per torchrun
launch on 2 busy cores) launch the real CLI with ``torchrun --standalone --nproc-per-node 2 ... --shard fsdp``.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_distributed import assert_same_trajectory, corpus, in_process, log, torchrun
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint, one_error_line
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import LATEST_FILE, load_checkpoint
from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.networks import Discriminator
from didi_seq.models.process import LogLinearSchedule
from didi_seq.training.distributed import Ranks
from didi_seq.training.sharding import (
    SHARDED_DIR,
    SHARDED_LEAF,
    clone_module,
    global_sum,
    has_sharded,
    read_shards,
    shards_scratch_name,
    transformer_blocks,
)
from didi_seq_cli.main import app

runner = CliRunner()


# -- in process --------------------------------------------------------------------------------


def tiny_dit(layers=3):
    return DiT(DiTConfig(vocab_size=11, length=8, hidden=16, layers=layers, heads=2, cond_dim=8))


def test_the_units_are_the_transformer_blocks():
    model = tiny_dit()
    assert transformer_blocks(model) == list(model.blocks)
    disc = Discriminator(model, 1, LogLinearSchedule(), bf16=False)
    assert transformer_blocks(disc) == list(disc.trunk.blocks)  # the discriminator's trunk, not the teacher's


def test_an_unsharded_clone_is_an_independent_copy():
    model = tiny_dit(1)
    copy = clone_module(model)
    assert copy is not model and all(torch.equal(a, b) for a, b in zip(model.parameters(), copy.parameters(), strict=True))
    with torch.no_grad():
        next(copy.parameters()).add_(1)
    assert not torch.equal(next(copy.parameters()), next(model.parameters()))


def test_global_sum_of_whole_tensors_is_their_sum():
    assert global_sum([torch.tensor(1.5), torch.tensor(2.25)], Ranks()) == 3.75


def test_resuming_a_data_parallel_run_sharded_is_refused_with_one_line(tmp_path):
    state = {"step": 3, "config": {}, "model": {"w": torch.zeros(2)}}
    assert not has_sharded(state) and has_sharded({"model": {"w": SHARDED_LEAF}})
    with pytest.raises(DidiError, match="written without --shard fsdp"):
        read_shards(state, tmp_path, torch.device("cpu"), Ranks(0, 2, sharded=True))
    assert read_shards(state, tmp_path, torch.device("cpu"), Ranks()) is state  # unsharded: as saved


def test_shards_of_a_killed_checkpoint_write_are_debris_the_resume_removes(tmp_path):
    from didi_seq.training.run_dir import check_run_dir, checkpoint_dir, prepare_resume

    scratch = tmp_path / "checkpoints" / shards_scratch_name(checkpoint_dir(tmp_path, 3))
    scratch.mkdir(parents=True)
    (scratch / "__0_0.distcp").write_bytes(b"half")
    check_run_dir(tmp_path)  # not a foreign entry that would make --out refused
    prepare_resume(tmp_path, 0)
    assert not scratch.exists()


@pytest.mark.parametrize("command", ["pretrain", "distill"])
def test_fsdp_on_a_single_process_is_one_error_line_and_creates_nothing(tmp_path, monkeypatch, command):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "new" / "run"
    r = runner.invoke(app, [command, "--domain", "text", "--shard", "fsdp", "--out", str(out)])
    one_error_line(r, "--shard fsdp shards the networks over torchrun's ranks")
    assert not out.parent.exists()
    one_error_line(runner.invoke(app, [command, "--domain", "text", "--shard", "zero", "--out", str(out)]),
                   "unknown --shard 'zero'; expected ddp or fsdp")


def test_fsdp_on_one_torchrun_rank_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    one_error_line(runner.invoke(app, ["pretrain", "--domain", "text", "--shard", "fsdp", "--out", str(tmp_path / "r")]),
                   "this is a single process")


# -- the real CLI under torchrun -------------------------------------------------------------------


def weights(run):
    return load_checkpoint(run).state


def assert_close_weights(a, b, atol=1e-5):
    sa, sb = weights(a), weights(b)
    assert sa.keys() == sb.keys()
    assert all(torch.allclose(sa[k], sb[k], atol=atol) for k in sa)


def cut_after(run: Path, step: int, to: Path) -> Path:
    """A copy of ``run`` as if it had died after checkpoint ``step`` (later checkpoints gone)."""
    shutil.copytree(run, to)
    for later in (to / "checkpoints").glob("step_*"):
        if int(later.name.split("_")[1]) > step:
            shutil.rmtree(later)
    (to / LATEST_FILE).write_text(f"step_{step:07d}\n")
    return to


def shards_of(checkpoint: Path) -> dict:
    """The resume state's sharded tensors read back whole by one process (torch.distributed.checkpoint)."""
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(checkpoint / SHARDED_DIR)).read_metadata().state_dict_metadata
    out = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in meta.items()}
    with pytest.warns(UserWarning, match="load in a single process"):
        dcp.load(out, checkpoint_id=str(checkpoint / SHARDED_DIR))
    return out


@pytest.mark.slow
def test_sharded_pretraining_follows_one_rank_resumes_anywhere_and_samples(tmp_path):
    common = ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", corpus(tmp_path), "--steps", 6,
              "--ckpt-every", 3, "--batch-size", 8, "--threads", 1, "--no-bf16", "--device", "cpu"]
    torchrun(*common, "--shard", "fsdp", "--out", tmp_path / "two")
    in_process(*common, "--out", tmp_path / "one")
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", ["loss", "grad_norm", "val_nelbo"], rel=1e-4)
    assert_close_weights(tmp_path / "one", tmp_path / "two")

    last = tmp_path / "two" / "checkpoints" / "step_0000006"
    state = torch.load(last / "training_state.pt", weights_only=True)
    assert state["model"]["blocks.0.attn_qkv.weight"] == SHARDED_LEAF  # the weights live in sharded/, not twice
    # the published weights are the gathered EMA, exactly as its shards hold it
    shards, published = shards_of(last), weights(last)
    assert all(torch.equal(published[k], shards[f"ema/{k}"]) for k in published)

    # the 2-rank sharded run, killed after step 3, continued by a single process without --shard
    cut = cut_after(tmp_path / "two", 3, tmp_path / "cut")
    in_process(*common, "--out", cut, "--resume")
    assert_same_trajectory(tmp_path / "one", cut, ["loss", "grad_norm", "val_nelbo"], rel=1e-4)
    assert_close_weights(tmp_path / "one", cut)

    samples = [[json.loads(line)["tokens"] for line in in_process(
        "sample", "--domain", "text", "--checkpoint", run, "--nfe", 4, "--num-samples", 2, "--output", "-").stdout.splitlines()]
        for run in (last, tmp_path / "one")]
    assert len(samples[0]) == 2 and samples[0] == samples[1]


DISTILL = {
    "didi-instruct": ["--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 2],
    # rounds of 2 steps: the round teacher (a sharded clone of the EMA student) appears at step 3 and 5
    "sdtt": ["--batch-size", 4, "--sdtt-rounds", 3, "--sdtt-start-nfe", 16],
    # MMD stops at 4: at its 6th step one rank's fill draw flips against one process's (also under ddp)
    "mmd": ["--batch-size", 4, "--mmd-feature-block", 0, "--steps", 4],
}
def untimed(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("s_per_step", "elapsed_s")} for m in lines]


KEYS = ["disc_loss", "disc_acc", "loss", "reward", "kl", "entropy", "grad_norm", "drift"]


# A cosine between the step's gradient and Adam's momentum (in [−1, 1]) amplifies the all-reduce's float order:
# on an AVX-512 CPU the didi-instruct run differed by 1.4e-4 at step 4 and 4.3e-4 at step 5 (−0.12107 against
# −0.1215) while loss, gradient norm and drift agreed to 1e-4 relative; a wrong reduction moves it by far more.
COSINE = {"keys": ["grad_momentum_cos"], "rel": 0, "abs": 2e-3}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(DISTILL))
def test_sharded_distillation_follows_one_rank(tmp_path, method):
    teacher = build_tiny_checkpoint(tmp_path / "teacher")
    common = ["distill", "--domain", "text", "--method", method, "--teacher", teacher, "--corpus", corpus(tmp_path),
              "--steps", 6, "--ckpt-every", 3, "--threads", 1, "--device", "cpu", *DISTILL[method]]
    torchrun(*common, "--shard", "fsdp", "--out", tmp_path / "two")
    in_process(*common, "--out", tmp_path / "one")
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", KEYS, rel=1e-4)
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", **COSINE)
    assert_close_weights(tmp_path / "one", tmp_path / "two")

    if method == "didi-instruct":  # resumed on 2 sharded ranks, it is the uninterrupted run bit for bit
        cut = cut_after(tmp_path / "two", 3, tmp_path / "cut")
        torchrun(*common, "--shard", "fsdp", "--out", cut, "--resume")
        assert untimed(log(cut)) == untimed(log(tmp_path / "two"))
        sa, sb = weights(tmp_path / "two"), weights(cut)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        # the discriminator beside the student is gathered whole, and RGAS samples with it
        from safetensors.torch import load_file

        da, db = (load_file(str(r / "checkpoints" / "step_0000006" / "discriminator.safetensors"))
                  for r in (tmp_path / "one", cut))
        assert da.keys() == db.keys() and all(torch.allclose(da[k], db[k], atol=1e-5) for k in da)
        r = in_process("sample", "--domain", "text", "--checkpoint", cut, "--teacher", teacher, "--sampler", "rgas",
                       "--nfe", 2, "--num-samples", 2, "--output", "-")
        assert len([json.loads(line) for line in r.stdout.splitlines()]) == 2
    if method == "sdtt":  # killed after step 3 (its state holds the round-1 teacher), continued by one process
        cut = cut_after(tmp_path / "two", 3, tmp_path / "cut")
        assert torch.load(cut / "checkpoints" / "step_0000003" / "training_state.pt",
                          weights_only=True)["sdtt_round_teacher"]["blocks.0.attn_qkv.weight"] == SHARDED_LEAF
        in_process(*common, "--out", cut, "--resume")
        assert_same_trajectory(tmp_path / "one", cut, KEYS, rel=1e-4)
        assert_same_trajectory(tmp_path / "one", cut, **COSINE)
        assert_close_weights(tmp_path / "one", cut)
