"""Devices: names, the host-random-numbers convention, and (where a GPU exists) CUDA runs
that follow the CPU ones. The CUDA tests are skipped on CPU-only machines (CI here)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_checkpoint
from didi_seq.devices import backend_for, host_rand, resolve_device
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain
from didi_seq.sampling.ancestral import SamplerConfig, sample_batches
from didi_seq_cli.main import app

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda0", "gpu"):
        with pytest.raises(DidiError, match="unknown --device"):
            resolve_device(bad)
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DidiError, match="sees no CUDA GPU"):
            resolve_device(name)


def test_host_rand_is_the_cpu_stream_whatever_the_device():
    a = host_rand((3, 4), torch.Generator().manual_seed(5), "cpu")
    b = torch.rand((3, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    if torch.cuda.is_available():
        c = host_rand((3, 4), torch.Generator().manual_seed(5), "cuda")
        assert c.device.type == "cuda" and torch.equal(c.cpu(), b)


@needs_cuda
def test_cuda_sampling_follows_cpu(tmp_path):
    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    dom = get_domain("text")
    cpu, _ = load_teacher(str(ckpt), dom)
    gpu, _ = load_teacher(str(ckpt), dom)
    cpu.bf16 = gpu.bf16 = False
    gpu.to("cuda")
    x = torch.full((4, 16), cpu.spec.mask_id)
    x[:, ::3] = 7
    positions, t = x == cpu.spec.mask_id, torch.full((4,), 0.6)
    ref = cpu.masked_log_probs(x, t, positions)
    got = gpu.masked_log_probs(x.cuda(), t.cuda(), positions.cuda())
    assert torch.allclose(got.cpu(), ref, atol=1e-4)
    a = sample_batches(cpu, 8, SamplerConfig(nfe=8), seed=3)
    b = sample_batches(gpu, 8, SamplerConfig(nfe=8), seed=3)
    assert b.tokens.device.type == "cpu" and a.network_calls == b.network_calls
    # same host uniforms over near-equal probabilities: nearly every draw agrees
    assert (a.tokens == b.tokens).float().mean() > 0.95


@needs_cuda
def test_cuda_pretrain_follows_cpu_and_its_checkpoint_loads_anywhere(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    common = ["pretrain", "--domain", "text", "--preset", "tiny", "--corpus", str(corpus), "--steps", "6",
              "--ckpt-every", "3", "--batch-size", "8", "--no-bf16"]
    logs = {}
    for device in ("cpu", "cuda"):
        r = runner.invoke(app, [*common, "--out", str(tmp_path / device), "--device", device])
        assert r.exit_code == 0, r.output
        logs[device] = [json.loads(line) for line in (tmp_path / device / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(logs["cpu"], logs["cuda"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4)
    assert all(v.device.type == "cpu" for v in load_checkpoint(tmp_path / "cuda").state.values())


@needs_cuda
def test_cuda_distill_resumes_on_the_cpu(tmp_path):
    teacher = build_tiny_checkpoint(tmp_path / "teacher")
    common = ["distill", "--domain", "text", "--teacher", str(teacher), "--ckpt-every", "2", "--batch-size", "2",
              "--group-size", "2", "--disc-warmup-steps", "1", "--out", str(tmp_path / "run")]
    r = runner.invoke(app, [*common, "--steps", "2", "--device", "cuda"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*common, "--steps", "4", "--device", "cpu", "--resume"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", "--domain", "text", "--nfe", "4", "--num-samples", "2", "--checkpoint",
                            str(tmp_path / "run"), "--sampler", "rgas", "--teacher", str(teacher), "--device", "cuda"])
    assert r.exit_code == 0, r.output
