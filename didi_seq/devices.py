"""Where the networks run: the CPU or a CUDA device (one per rank under torchrun).

The convention: **random numbers come from the host, arithmetic from the device.** Every
random stream is a CPU ``torch.Generator`` and its draws are moved to the device
(``host_rand``), so a run on a GPU consumes exactly the random numbers of a CPU run, a
checkpoint made on either resumes on the other, and the samplers' fp64 categorical draws
do not depend on the device's generator. Samplers take start states from the host and hand
their samples back to it; only the float arithmetic of the networks differs by device.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from .errors import DidiError

EXPECTED = "auto, cpu, cuda or cuda:N"


def default_threads() -> int:
    """torch CPU threads when none are asked for: half the cores, at most 4. torch's own default (every
    core) oversubscribes a shared machine: the quick-start sample took 18 s with it on a busy 2-core box
    and 2 s with one thread; the embedded models gain little beyond a few threads."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """The device ``name`` means for this process; under torchrun ``cuda`` is ``cuda:LOCAL_RANK``.
    A CUDA device also becomes the process's current one (NCCL and bare ``.cuda()`` calls use it)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DidiError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
        try:
            device = torch.device(name if ":" in name else f"cuda:{local_rank}")
        except RuntimeError:
            raise DidiError(f"--device {name!r} is not a device name; expected {EXPECTED}") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DidiError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        torch.cuda.set_device(device)
        return device
    raise DidiError(f"unknown --device {name!r}; expected {EXPECTED}")


def backend_for(device: torch.device) -> str:
    """torch.distributed backend for ranks on ``device``: NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def host_rand(shape, generator: torch.Generator | None, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniforms drawn from a CPU ``generator`` and moved to ``device`` (see the module docstring)."""
    return torch.rand(shape, dtype=dtype, generator=generator).to(device)


CPU_BF16_ENV = "DIDI_SEQ_CPU_BF16"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether bf16 autocast pays on this CPU. Where the CPU lacks bf16 instructions (AVX512-BF16 or
    AMX) torch emulates them and autocast is 7x slower for a forward and 21x for forward+backward than
    fp32 (``benchmarks/bf16_cpu.py`` on an AVX2 EPYC), so didi-seq then computes in fp32.
    ``DIDI_SEQ_CPU_BF16=1`` or ``0`` overrides the check (to reproduce a run made on the other kind)."""
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        raise DidiError(f"{CPU_BF16_ENV}={override!r}: expected 0 or 1 (or unset, to ask the CPU)")
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")


def bf16_in_effect(device_type: str, requested: bool = True) -> bool:
    """Whether a bf16 request is honoured on ``device_type``: always on GPUs, on CPUs only with native bf16."""
    return requested and (device_type != "cpu" or cpu_has_native_bf16())


def bf16_autocast(device_type: str, enabled: bool = True):
    """bf16 autocast for a trunk on ``device_type`` (fp32 logits are taken outside it); fp32 on a CPU
    without native bf16 (see ``cpu_has_native_bf16``)."""
    if bf16_in_effect(device_type, enabled):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without any)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))
