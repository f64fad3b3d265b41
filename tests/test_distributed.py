"""Data-parallel training: 2 gloo ranks under torchrun follow the 1-process trajectory.

The fast tests check the sharding conventions in process; the slow ones (~15 s each on
2 busy cores, mostly interpreter starts; run in .ci/run) launch the real CLI with
``torchrun --standalone --nproc-per-node 2`` against one in-process run with the same
global batch, and resume a 2-rank run on 1 rank.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import LATEST_FILE, load_checkpoint
from didi_seq.training.distributed import Ranks, RowNoise, local_mean
from didi_seq_cli.main import app

runner = CliRunner()


# -- the conventions, in process -----------------------------------------------------------


def test_row_noise_shards_are_rows_of_the_one_process_draw():
    whole = torch.rand((6, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    parts = []
    for rank in range(3):
        rows = Ranks(rank, 3).rows(6, "batch")
        parts.append(RowNoise(torch.Generator().manual_seed(3), 6, rows).uniform(5))
    assert torch.equal(torch.cat(parts), whole)


def test_shares_of_a_mean_add_up_to_the_mean():
    """What Ranks.mean computes per rank (local sum / global count) sums to the global mean."""
    x, w = torch.arange(8.0), torch.tensor([1.0, 0, 1, 1, 0, 0, 1, 1])
    shares = [x[s].sum() / x.numel() for s in (slice(0, 4), slice(4, 8))]
    assert torch.isclose(sum(shares), local_mean(x))
    weighted = [(x[s] * w[s]).sum() / w.sum() for s in (slice(0, 4), slice(4, 8))]
    assert torch.isclose(sum(weighted), local_mean(x, w))
    assert local_mean(torch.zeros(0)).item() == 0.0  # nothing masked on a rank: no NaN


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(DidiError, match="does not split over 2 ranks"):
        Ranks(0, 2).rows(3, "--batch-size")


# -- the real CLI under torchrun ---------------------------------------------------------


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "didi_seq_cli.main", *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def in_process(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_trajectory(a, b, keys, rel=1e-3, abs=1e-4):  # noqa: A002 - pytest.approx's name
    la, lb = log(a), log(b)
    assert [m["step"] for m in la] == [m["step"] for m in lb]  # one writer: each step logged once
    for ma, mb in zip(la, lb, strict=True):
        for k in keys:
            if k in ma:
                assert mb[k] == pytest.approx(ma[k], rel=rel, abs=abs), (ma["step"], k)


def assert_same_weights(a, b, atol=1e-4):
    sa, sb = load_checkpoint(a).state, load_checkpoint(b).state
    assert all(torch.allclose(sa[k], sb[k], atol=atol) for k in sa)


def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    return path


# gloo between CPU processes here; NCCL between GPUs where a machine has two
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"))]


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_pretrain_on_two_ranks_follows_one_rank(tmp_path, device):
    common = ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", corpus(tmp_path), "--steps", 6,
              "--ckpt-every", 3, "--batch-size", 8, "--threads", 1, "--no-bf16", "--device", device]
    torchrun(*common, "--out", tmp_path / "two")
    in_process(*common, "--out", tmp_path / "one")
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", ["loss", "grad_norm", "val_nelbo"])
    assert_same_weights(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_distill_on_two_ranks_follows_one_rank_and_resumes_on_one(tmp_path, device):
    teacher = build_tiny_checkpoint(tmp_path / "teacher")
    common = ["distill", "--domain", "text", "--teacher", teacher, "--corpus", corpus(tmp_path), "--steps", 6,
              "--ckpt-every", 3, "--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 2, "--threads", 1,
              "--device", device]
    torchrun(*common, "--out", tmp_path / "two")
    in_process(*common, "--out", tmp_path / "one")
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", ["disc_loss", "disc_acc", "loss", "reward", "kl", "entropy"])
    assert_same_weights(tmp_path / "one", tmp_path / "two")

    # as if the 2-rank job had died after step 3: continue it on a single process
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "two", cut)
    shutil.rmtree(cut / "checkpoints" / "step_0000006")
    (cut / LATEST_FILE).write_text("step_0000003\n")
    in_process(*common, "--out", cut, "--resume")
    assert_same_trajectory(tmp_path / "one", cut, ["disc_loss", "loss", "reward"])
    assert_same_weights(tmp_path / "one", cut)
