"""Every citation in the repository can be followed by a reader of the repository.

Comments once cited ``research/*.md §…`` and ``DESIGN.md``: notes that lived beside the
project, never in it. Cite a paper (arXiv id), an upstream repository and path, or a page
under docs/; a docs page cited with a section number must have that section.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# notes outside the repository ("facebookresearch/esm" is a repository, hence the look-behind)
UNFOLLOWABLE = re.compile(r"(?<![\w-])research/[\w./-]*|(?<![\w/-])DESIGN\.md")
DOCS_CITATION = re.compile(r"docs/([\w-]+\.md)(?:\s*§\s*(\d+))?")


def repository_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (so a citation is caught before its commit)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def texts() -> dict[str, str]:
    found = {}
    for path in repository_files():
        if path == Path(__file__).resolve():
            continue
        data = path.read_bytes()
        if b"\0" not in data:  # text files only
            found[str(path.relative_to(ROOT))] = data.decode("utf-8", errors="replace")
    return found


def unfollowable(text: str) -> list[str]:
    return [m.group(0) for m in UNFOLLOWABLE.finditer(text)]


def broken_docs_citations(text: str) -> list[str]:
    bad = []
    for m in DOCS_CITATION.finditer(text):
        page = ROOT / "docs" / m.group(1)
        if not page.is_file():
            bad.append(m.group(0))
        elif m.group(2) and not re.search(rf"^#+ {m.group(2)}\. ", page.read_text(), re.M):
            bad.append(m.group(0))
    return bad


def test_the_patterns_on_examples():
    note = "/".join(("research", "env.md"))  # built, so the repository holds no such citation itself
    assert unfollowable(f"bf16 is faster ({note} §2); see DESIGN.md §3") == [note, "DESIGN.md"]
    assert unfollowable("facebookresearch/esm README; docs/design-notes.md") == []
    assert broken_docs_citations("docs/machine-notes.md §2 and docs/machine-notes.md") == []
    assert broken_docs_citations("docs/machine-notes.md §99; docs/nowhere.md") == ["docs/machine-notes.md §99", "docs/nowhere.md"]


def test_no_citation_points_outside_the_repository():
    bad = [f"{name}: {hit}" for name, text in texts().items() for hit in unfollowable(text)]
    assert not bad, "cite a paper, an upstream repository + path, or a docs/ page instead:\n" + "\n".join(bad)


def test_cited_docs_pages_and_sections_exist():
    bad = [f"{name}: {hit}" for name, text in texts().items() for hit in broken_docs_citations(text)]
    assert not bad, "\n".join(bad)
