"""bf16 autocast only where it pays: GPUs and CPUs with native bf16 (``devices.cpu_has_native_bf16``)."""

import pytest
import torch

from didi_seq import devices
from didi_seq.errors import DidiError


@pytest.fixture
def cpu_bf16(monkeypatch):
    def set_to(value: str | None):
        if value is None:
            monkeypatch.delenv(devices.CPU_BF16_ENV, raising=False)
        else:
            monkeypatch.setenv(devices.CPU_BF16_ENV, value)
        devices.cpu_has_native_bf16.cache_clear()
    yield set_to
    devices.cpu_has_native_bf16.cache_clear()


def matmul_dtype() -> torch.dtype:
    a = torch.ones(4, 4)
    with devices.bf16_autocast("cpu", True):
        return (a @ a).dtype


def test_cpu_without_native_bf16_computes_in_fp32(cpu_bf16):
    cpu_bf16("0")
    assert not devices.bf16_in_effect("cpu", True)
    assert matmul_dtype() == torch.float32


def test_cpu_with_native_bf16_autocasts(cpu_bf16):
    cpu_bf16("1")
    assert devices.bf16_in_effect("cpu", True) and not devices.bf16_in_effect("cpu", False)
    assert matmul_dtype() == torch.bfloat16


def test_gpus_always_honour_a_bf16_request(cpu_bf16):
    cpu_bf16("0")
    assert devices.bf16_in_effect("cuda", True) and not devices.bf16_in_effect("cuda", False)


def test_bad_override_is_one_error(cpu_bf16):
    cpu_bf16("yes")
    with pytest.raises(DidiError, match="DIDI_SEQ_CPU_BF16"):
        devices.cpu_has_native_bf16()


def test_unset_asks_the_cpu(cpu_bf16):
    cpu_bf16(None)
    assert devices.cpu_has_native_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_sample_records_say_what_the_trunk_computed_in(cpu_bf16):
    from didi_seq.sampling.generate import trunk_precision

    class Adapter:
        model, bf16 = torch.nn.Linear(2, 2), True

    cpu_bf16("0")
    assert trunk_precision(Adapter()) == "fp32"
    cpu_bf16("1")
    assert trunk_precision(Adapter()) == "bf16-autocast"


def test_sample_records_name_a_students_distillation_method():
    from didi_seq.io.provenance import SourceInfo
    from didi_seq.io.samples import distilled_by

    assert distilled_by(SourceInfo.from_dict({"id": "s", "kind": "student", "method": "sdtt"})) == {"method": "sdtt"}
    assert distilled_by(SourceInfo.from_dict({"id": "s", "kind": "student"})) == {"method": "didi-instruct"}
    assert distilled_by(SourceInfo.from_dict({"id": "t", "kind": "teacher"})) == {}
    assert distilled_by(SourceInfo.from_dict({"id": "hub"})) == {}
