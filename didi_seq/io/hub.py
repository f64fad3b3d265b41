"""The command that downloads a hub repository, spelled as the installed huggingface_hub spells it.

huggingface_hub 0.34 added the ``hf`` CLI (``hf download``) and 1.0 removed ``huggingface-cli``;
a message naming the wrong one sends the user to "command not found". The installed package's
own console scripts decide (read from its metadata, so a venv that is not on PATH still gets
the right name).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution


def _console_scripts() -> set[str]:
    try:
        return {ep.name for ep in distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    except PackageNotFoundError:
        return set()


def hub_cli() -> str:
    """``hf`` where the installed huggingface_hub provides it, else the older ``huggingface-cli``."""
    return "hf" if "hf" in _console_scripts() else "huggingface-cli"


def download_command(repo_id: str, *files: str, revision: str | None = None) -> str:
    """E.g. ``hf download owner/name model.safetensors --revision abc`` (both CLIs take these arguments)."""
    parts = [hub_cli(), "download", repo_id, *files]
    if revision:
        parts += ["--revision", revision]
    return " ".join(parts)


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def stay_offline() -> None:
    """Put huggingface_hub, datasets and transformers in offline mode unless the user chose otherwise.

    Why: didi-seq reads hub models and datasets from the local cache only; online, a cache miss made the
    libraries retry a HEAD request 22 times over 52 s on a machine without network before the real error
    (issue 25). Must run before those libraries are imported: they read the variables at import time."""
    import os

    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")
