"""Reading files didi-seq did not write (downloaded checkpoints, user data) with bounded cost.

A checkpoint is untrusted input: its ``config.json`` may be a symlink to ``/dev/zero`` or a
FIFO (reading it never ends), gigabytes long, or nested deeply enough to overflow the JSON
parser's recursion. Metadata files are therefore read only when they are regular files and
only up to ``MAX_METADATA_BYTES``; every failure is one ``CheckpointError``/``DidiError``
naming the file. Weights are not read here: safetensors files are memory-mapped and their
header is checked against the config before anything is allocated (``safetensors_shapes``).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

from ..errors import DidiError

# Configs, tokenizers and provenance of real checkpoints are kilobytes to a few MB (GPT-2's
# tokenizer.json is 1.4 MB); 64 MiB leaves room for any real one and bounds a hostile one.
MAX_METADATA_BYTES = 64 << 20


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else type(e).__name__


def check_regular_file(path: Path, what: str = "file", error: type[DidiError] = DidiError) -> os.stat_result:
    """stat() of ``path`` (symlinks followed) when it is a regular file; otherwise one clear error."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or first_line(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {describe_mode(st.st_mode)}, not a regular file")
    return st


def describe_mode(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_bounded_file(path: Path, what: str = "file", limit: int = MAX_METADATA_BYTES,
                       error: type[DidiError] = DidiError) -> None:
    """A regular file of at most ``limit`` bytes, for files another library will read."""
    if check_regular_file(path, what, error).st_size > limit:
        raise error(f"{what} {path} is larger than {limit >> 20} MiB; refusing to read it")


def read_bounded(path: Path, what: str = "file", limit: int = MAX_METADATA_BYTES,
                 error: type[DidiError] = DidiError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a file that grows while read is cut and refused)."""
    path = Path(path)
    check_regular_file(path, what, error)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or first_line(e)}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit >> 20} MiB; refusing to read it")
    return data


def read_text(path: Path, what: str = "file", limit: int = MAX_METADATA_BYTES, error: type[DidiError] = DidiError) -> str:
    data = read_bounded(path, what, limit, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def parse_json(text: str, where: str, error: type[DidiError] = DidiError):
    """``json.loads`` whose every failure (syntax, nesting too deep, huge integers) is one error naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise error(f"{where} is not usable JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit
        raise error(f"{where} is not usable JSON ({first_line(e, 120)})") from None


def read_json(path: Path, what: str = "file", error: type[DidiError] = DidiError):
    return parse_json(read_text(path, what, error=error), str(path), error)


def safetensors_shapes(path: Path, error: type[DidiError] = DidiError) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a safetensors header alone (8-byte length + JSON), bounded in size.

    Lets a loader compare what a config implies with what the file holds before building a
    network or reading a single weight.
    """
    path = Path(path)
    st = check_regular_file(path, "weights file", error)
    bad = f"{path} is truncated or not a safetensors file"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise error(bad + " (no header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_METADATA_BYTES, st.st_size - 8):
                raise error(bad + " (header length out of range)")
            header = f.read(n)
    except OSError as e:
        raise error(f"cannot read weights file {path}: {e.strerror or first_line(e)}") from None
    try:
        meta = parse_json(header.decode("utf-8"), str(path), error)
    except UnicodeDecodeError:
        raise error(bad + " (header is not UTF-8)") from None
    if not isinstance(meta, dict):
        raise error(bad + " (header is not an object)")
    shapes = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise error(bad + f" (tensor {name!r} has no valid shape)")
        shapes[name] = tuple(shape)
    return shapes
