"""Result files of a command (``--output``): where they may go, and how they are written together.

User files are sacred, so an output path is checked before any work starts:

* it is a new path or an existing regular file: a directory, ``.``, a device node or a FIFO
  is refused (an atomic rename would *replace* ``/dev/null`` or a pipe with a regular file);
  a symlink is followed, so the file it points to is what gets replaced;
* it is none of the command's inputs (compared with ``samefile``), not a file inside a
  checkpoint directory and not one of a training run's own files;
* sibling outputs (a protein FASTA next to the JSONL) get names that collide with no input
  and no other output (``sibling``).

All outputs of one command are then written to hidden temporaries and renamed into place only
when every one of them was written (``write_all``): a failure (disk full, a bad record) leaves
every existing file as it was. Temporaries of a killed write are removed by the next write to
the same path (``checkpoint.write_temp``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import DidiError
from .checkpoint import CONFIG_FILE, LATEST_FILE, MODEL_FILE, check_parent_dir, write_error, write_temp
from .untrusted import describe_mode

# Files whose presence next to a config.json marks a checkpoint directory (ours, transformers')
WEIGHT_FILES = (MODEL_FILE, "pytorch_model.bin")
# A training run's own files (run_dir.py), beside its LATEST
RUN_FILES = (LATEST_FILE, "metrics.jsonl", ".lock")


def input_paths(*candidates) -> list[Path]:
    """The options of a command that name existing files or directories (hub ids and names are skipped)."""
    found = []
    for c in candidates:
        for item in c if isinstance(c, (list, tuple)) else [c]:
            if not isinstance(item, (str, os.PathLike)) or str(item) in ("", "-"):
                continue  # numbers, flags and stdout are not files
            try:
                if Path(item).exists():
                    found.append(Path(item))
            except (OSError, ValueError):  # e.g. a comma list too long to be a file name
                continue
    return found


def is_checkpoint_dir(d: Path) -> bool:
    """A directory holding a config.json and weights: a checkpoint (ours or transformers'), never an output."""
    return (d / CONFIG_FILE).is_file() and any((d / w).exists() for w in WEIGHT_FILES)


def check_output(path: Path, inputs: Iterable[Path] = (), option: str = "--output") -> Path:
    """The file to write for ``path`` (symlinks resolved) after the checks in the module docstring."""
    given = Path(path)
    if str(path) in ("", ".", ".."):
        raise DidiError(f"{option} {str(path)!r} is a directory, not a file name")
    target = Path(os.path.realpath(given))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise DidiError(f"{option} {given}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise DidiError(f"{option} {given} is {describe_mode(st.st_mode)}, not a regular file; "
                        "results are only written to regular files")
    for inp in inputs:
        src = Path(os.path.realpath(inp))
        if st is not None and src.exists() and os.path.samefile(src, target):
            raise DidiError(f"{option} {given} is one of this command's inputs ({inp}); choose another file name")
    if (target.parent / LATEST_FILE).is_file() and target.name in RUN_FILES:
        raise DidiError(f"{option} {given} is a file of the training run in {target.parent}; choose another file name")
    for d in target.parents:
        if is_checkpoint_dir(d):
            raise DidiError(f"{option} {given} lies inside the checkpoint directory {d}; write results elsewhere")
    check_parent_dir(target)
    return target


def sibling(output: Path, suffix: str, taken: Iterable[Path], inputs: Iterable[Path] = ()) -> Path:
    """Where a companion file of ``output`` goes: ``x.jsonl`` → ``x<suffix>``, or ``x.jsonl<suffix>``
    when that would be ``output`` itself, another output in ``taken`` or an input."""
    taken = {Path(os.path.realpath(p)) for p in taken}
    inputs = list(inputs)
    resolved_inputs = {Path(os.path.realpath(p)) for p in inputs}
    output = Path(output)
    for candidate in (output.with_suffix(suffix), output.with_name(output.name + suffix)):
        real = Path(os.path.realpath(candidate))
        if real in taken or real in resolved_inputs:
            continue
        try:
            return check_output(candidate, inputs, option=f"the {suffix} file beside --output")
        except DidiError:
            continue
    raise DidiError(f"no free name for the {suffix} file beside {output} (tried {output.with_suffix(suffix).name} and "
                    f"{output.name + suffix}: inputs, directories or special files); choose another --output")


def plan_outputs(output: Path, suffixes: Iterable[str] = (), inputs: Iterable[Path] = ()) -> list[Path]:
    """``output`` and one sibling per suffix, all checked and pairwise distinct; nothing is written."""
    inputs = list(inputs)
    paths = [check_output(output, inputs)]
    for suffix in suffixes:
        paths.append(sibling(output, suffix, paths, inputs))
    return paths


def write_all(files: Iterable[tuple[Path, bytes]]) -> None:
    """Write every (path, bytes) to a temporary first, then rename them all into place: a failure
    while writing leaves every existing file untouched and no temporary behind."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            staged.append((write_temp(path, data), Path(path)))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise write_error(path, e) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
