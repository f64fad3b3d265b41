"""docs/python-api.md is executed: every ```python block, in order, in one namespace."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_python_api_doc_runs(tmp_path, monkeypatch):
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 4  # load, sample, evaluate, save
    monkeypatch.chdir(tmp_path)  # save_pretrained("my-student") lands here
    namespace: dict = {}
    for n, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} block {n}", "exec"), namespace)
    assert (tmp_path / "my-student" / "README.md").exists()


def test_save_pretrained_refuses_a_non_empty_directory(tmp_path):
    import pytest

    from didi_seq import MaskedDiffusionModel
    from didi_seq.errors import DidiError

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine\n")
    model = MaskedDiffusionModel.from_pretrained("teacher", domain="text")
    with pytest.raises(DidiError, match="not empty"):
        model.save_pretrained(tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine\n"
    with pytest.raises(DidiError, match="pass domain="):
        MaskedDiffusionModel.from_pretrained("student")
