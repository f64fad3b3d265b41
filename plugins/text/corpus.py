"""Text corpora: the embedded Python-docs corpus, OpenWebText (owt.py), local files, or a ``datasets`` name."""

from __future__ import annotations

import json
from pathlib import Path

from didi_seq import DidiError

EMBEDDED_CORPUS = Path(__file__).resolve().parent / "assets" / "corpus"
LOCAL_BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
VALIDATION_FRACTION = 0.05


def _builder(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".xz", ".bz2", ".zst")]
    kind = LOCAL_BUILDERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DidiError(f"corpus file {path} has an unknown type; use .txt, .json, .jsonl or .parquet")
    return kind


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DidiError(f"corpus directory {path} holds no files")
        return files
    return [path]


def _check_jsonl(path: Path) -> None:
    """Name the first broken line ourselves: datasets only says "generation failed"."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DidiError(f"cannot read corpus {path}: line {n} is not UTF-8 ({e.reason} at byte {e.start})") from None
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    raise DidiError(f"cannot read corpus {path}: line {n} is not valid JSON ({e.msg})") from None
                except (ValueError, RecursionError) as e:
                    raise DidiError(f"cannot read corpus {path}: line {n} is not usable JSON ({type(e).__name__})") from None


def _check_utf8(path: Path) -> None:
    """Name the file and line of invalid UTF-8 ourselves (datasets says "an error occurred")."""
    import codecs
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    decoder = codecs.getincrementaldecoder("utf-8")()
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as e:
                raise DidiError(f"cannot read corpus {path}: line {n} is not UTF-8 ({e.reason})") from None


def read_local(src: str):
    """One ``datasets.Dataset`` from a local file or directory (.txt: one document per line;
    .json/.jsonl/.parquet: one document per row of the ``text`` column)."""
    import datasets

    path = Path(src)
    if not path.exists():
        raise DidiError(f"corpus {src} does not exist")
    files = _local_files(path)
    kinds = {_builder(f) for f in files}
    if len(kinds) > 1:
        raise DidiError(f"corpus {src} mixes file types {sorted(kinds)}; use one type")
    kind = kinds.pop()
    if all(f.stat().st_size == 0 for f in files):  # datasets fails on these with an empty message
        raise DidiError(f"corpus {src} is empty: every file in it has zero bytes")
    for f in files:
        if ".jsonl" in f.suffixes:
            _check_jsonl(f)
        elif ".txt" in f.suffixes:
            _check_utf8(f)
    try:
        return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    except Exception as e:  # noqa: BLE001 - datasets wraps parser errors in many types
        raise DidiError(f"cannot read corpus {src}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def load_text_corpus(src: str | None) -> dict:
    """{"train", "validation"} Datasets with a "text" column and the validation hash.

    ``src``: None (embedded), ``openwebtext`` / ``owt:PATH`` (MDLM's OWT split, see owt.py),
    a local file/directory, or any other ``datasets`` name.
    """
    import datasets

    from didi_seq.domain.data import text_hash

    from . import owt

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # errors reach the user as one DidiError line
    if owt.is_owt(src):
        return owt.load_owt(src, read_local)
    if src is None:
        manifest = json.loads((EMBEDDED_CORPUS / "manifest.json").read_text())
        files = {k: str(EMBEDDED_CORPUS / v["file"]) for k, v in manifest["splits"].items()}
        ds = datasets.load_dataset("json", data_files=files)
        train, val = ds["train"], ds["validation"]
        name = "embedded:python3.11-doc"
    else:
        if Path(src).exists():
            ds = read_local(src)
        else:
            try:
                ds = datasets.load_dataset(src, split="train")
            except Exception as e:  # noqa: BLE001
                raise DidiError(f"corpus {src} is neither a local path nor a loadable datasets name ({type(e).__name__})") from None
        if "text" not in ds.column_names:
            raise DidiError(f"corpus {src} has no 'text' column (columns: {ds.column_names})")
        kind = getattr(ds.features["text"], "dtype", None)
        if kind not in ("string", "large_string"):
            raise DidiError(f"corpus {src}: its 'text' column holds {kind or ds.features['text']} values, not text")
        ds = ds.filter(lambda r: bool(r["text"] and r["text"].strip()))
        if len(ds) == 0:
            raise DidiError(f"corpus {src} is empty: no non-blank documents")
        n_val = max(1, int(len(ds) * VALIDATION_FRACTION)) if len(ds) > 1 else 0
        # Last documents are validation (MDLM's OWT convention), so appending data never moves them.
        train = ds.select(range(len(ds) - n_val))
        val = ds.select(range(len(ds) - n_val, len(ds))) if n_val else ds.select([])
        name = str(src)
    return {"train": train, "validation": val, "name": name,
            "validation_sha256": text_hash(val) if len(val) else None}
