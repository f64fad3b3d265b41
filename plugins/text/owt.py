"""OpenWebText the way MDLM, DUO and DiDi-Instruct use it.

Sources: the hub dataset (``--corpus openwebtext`` or ``Skylion007/openwebtext``, read
through ``datasets``, from the local cache when ``HF_HUB_OFFLINE=1``), or a local copy
(``--corpus owt:PATH``: a .txt file with one document per line, or JSON/JSONL/Parquet
with a ``text`` column, or a directory of one of those). Split: the last 100,000
documents are validation, the rest train (``train[:-100000]`` / ``train[-100000:]``).
A re-converted hub copy may change row order and so silently change that set (the hub's
``openwebtext`` was a loading script, since converted to Parquet): the sha256 of the
validation documents is returned and recorded in every result. Wrapping into BOS … EOS blocks is ``didi_seq.domain.data.pack_blocks``.
"""

from __future__ import annotations

from didi_seq import DidiError

HUB_NAMES = ("openwebtext", "Skylion007/openwebtext")
LOCAL_PREFIX = "owt:"
VALIDATION_DOCS = 100_000


def is_owt(src: str | None) -> bool:
    return src is not None and (src in HUB_NAMES or src.startswith(LOCAL_PREFIX))


def mdlm_split(ds, validation_docs: int = VALIDATION_DOCS, name: str = "openwebtext") -> dict:
    """MDLM's split: the last ``validation_docs`` documents are validation."""
    from didi_seq.domain.data import text_hash

    if "text" not in ds.column_names:
        raise DidiError(f"corpus {name} has no 'text' column (columns: {ds.column_names})")
    if len(ds) <= validation_docs:
        raise DidiError(f"corpus {name} has {len(ds):,} documents; OpenWebText's split holds out the last "
                        f"{validation_docs:,} (the full corpus has about 8 million); pass the path without "
                        f"'{LOCAL_PREFIX}' to use a small corpus with a 5% validation split")
    cut = len(ds) - validation_docs
    train, val = ds.select(range(cut)), ds.select(range(cut, len(ds)))
    return {"train": train, "validation": val, "name": name, "validation_sha256": text_hash(val),
            "split": f"train[:-{validation_docs}] / validation = train[-{validation_docs}:] ({len(ds):,} documents)"}


def load_owt(src: str, read_local) -> dict:
    """``read_local(path)`` is the text plugin's reader for local files (one Dataset)."""
    import datasets

    if src.startswith(LOCAL_PREFIX):
        path = src[len(LOCAL_PREFIX):]
        return mdlm_split(read_local(path), name=f"openwebtext (local copy {path})")
    try:
        ds = datasets.load_dataset(src, split="train")
    except Exception as e:  # noqa: BLE001 - datasets raises many types, all mean "not available"
        offline = " (HF_HUB_OFFLINE is set: only the local cache is used)" if datasets.config.HF_HUB_OFFLINE else ""
        raise DidiError(f"cannot load the hub dataset {src}{offline}: {type(e).__name__}: {str(e).splitlines()[0][:160]}; "
                        f"download it where there is network, or pass a local copy as --corpus {LOCAL_PREFIX}PATH") from None
    fingerprint = getattr(ds, "_fingerprint", None)
    return mdlm_split(ds, name=f"{src} (hub, fingerprint {fingerprint})")
