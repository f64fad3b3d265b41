"""The typed provenance record reads every shipped checkpoint's provenance.json and writes it back
key for key (same keys, same order), and a fresh run's record reads back as what was written."""

import json
from pathlib import Path

import pytest

from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.io.provenance import Provenance, SourceInfo, TeacherRef

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("plugins/*/assets/*/provenance.json"), *ROOT.glob("examples/*/*/assets/*/provenance.json")])


def test_there_are_shipped_records():
    assert {p.parent.name for p in SHIPPED} == {"teacher", "student"} and len(SHIPPED) >= 4


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_records_round_trip_key_for_key(path):
    raw = json.loads(path.read_text())
    record = Provenance.from_dict(raw)
    assert list(record.to_dict().items()) == list(raw.items())
    assert record.kind == path.parent.name and record.model_sha256 == raw["model_sha256"]
    if record.kind == "student":
        assert record.teacher.sha256 == raw["teacher"]["sha256"] and record.config == raw["distill_config"]
    else:
        assert record.teacher is None and record.config == raw["pretrain_config"] and record.data["corpus"]


def test_a_written_student_record_reads_back(tmp_path):
    written = Provenance(name="text-student", kind="student", step=3, wall_clock_s=1.5, config={"steps": 3},
                         data={"corpus": "c", "validation_sha256": "ab"}, method="toy", last_metrics={"step": 3},
                         teacher=TeacherRef(id="t@1", sha256="1" * 64, path="/t", format="native"))
    d = written.to_dict()
    assert d["distill_config"] == {"steps": 3} and d["teacher"] == {"id": "t@1", "sha256": "1" * 64, "path": "/t",
                                                                     "format": "native"}
    assert "val_nelbo" not in d and d["corpus"] == "c" and d["method"] == "toy"
    assert Provenance.from_dict(json.loads(json.dumps(d))) == written


def test_checkpoint_record_of_a_shipped_student():
    student = next(p.parent for p in SHIPPED if p.parent.name == "student")
    record = load_checkpoint(student).record
    assert record.kind == "student" and record.teacher.id and record.step > 0


def test_source_info_keeps_the_loaders_dict_key_for_key():
    """``to_dict`` is the dict the loader gave (order and None-valued keys included); it reads as that dict."""
    given = {"format": "mdlm-hf", "source": "/m", "path": "/m", "revision": None, "model_sha256": "ab" * 32,
             "id": "m@abab", "domain": "text", "ema_decay": 0.9999}
    info = SourceInfo.build(**given)
    assert list(info.to_dict().items()) == list(given.items())
    assert (info.id, info.path, info.revision, info.tokenizer_file) == ("m@abab", "/m", None, None)
    assert info.extra == {"source": "/m", "ema_decay": 0.9999}
    assert "revision" in info.to_dict() and "tokenizer_file" not in info.to_dict()  # given as None vs never given
    info.tokenizer_file = "/m/tokenizer.json"  # a field set after loading is appended, not lost
    assert list(info.to_dict().items()) == [*given.items(), ("tokenizer_file", "/m/tokenizer.json")]
    assert SourceInfo.of(info) is info and SourceInfo.of(given).to_dict() == given and SourceInfo.of(None).to_dict() == {}


def test_native_loader_gives_a_source_info_of_the_checkpoint(tiny_ckpt):
    """What NativeTeacher.from_checkpoint put on the adapter before SourceInfo: provenance.json, then
    path, id, domain (in place if provenance.json has it) and the tokenizer file."""
    from didi_seq.models.loading import load_teacher
    from didi_seq.registry.plugins import get_domain

    adapter, _ = load_teacher(str(tiny_ckpt), get_domain("text"))
    ckpt = load_checkpoint(tiny_ckpt)
    want = {**json.loads((tiny_ckpt / "provenance.json").read_text()), "path": str(ckpt.path), "id": ckpt.id,
            "domain": "text", "tokenizer_file": str(ckpt.path / "tokenizer.json")}
    info = adapter.provenance
    assert isinstance(info, SourceInfo) and list(info.to_dict().items()) == list(want.items())
    assert (info.id, info.model_sha256, info.domain) == (ckpt.id, want["model_sha256"], "text")
    assert info.extra["name"] == "tiny-test" and TeacherRef.of(adapter).sha256 == want["model_sha256"]


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_shipped_text_checkpoints_load_with_a_source_info(which):
    from didi_seq.models.loading import load_teacher
    from didi_seq.registry.plugins import get_domain

    adapter, _ = load_teacher(which, get_domain("text"))
    info = adapter.provenance
    assert isinstance(info, SourceInfo) and info.extra["kind"] == which and len(info.model_sha256) == 64
    assert info.tokenizer_file.endswith("tokenizer.json") and info.path == str(Path(info.tokenizer_file).parent)
