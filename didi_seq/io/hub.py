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
