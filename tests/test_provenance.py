"""The typed provenance record reads every shipped checkpoint's provenance.json and writes it back
key for key (same keys, same order), and a fresh run's record reads back as what was written."""

import json
from pathlib import Path

import pytest

from didi_seq.checkpoint import load_checkpoint
from didi_seq.provenance import Provenance, TeacherRef

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
