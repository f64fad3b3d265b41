"""Turn a user's SRC (``teacher``, ``student``, a path, a hub id) into a TeacherAdapter.

Every format plugin is tried through its ``detect``; the domain and vocabulary are
checked here once so no command can sample a protein teacher with a text tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DidiError
from ..io.provenance import SourceInfo
from ..io.untrusted import check_bounded_file

EMBEDDED = ("teacher", "student")


def resolve_source(src: str | None, domain, default: str = "teacher") -> Path:
    """The path of a SRC; ``None`` means ``default``. An empty or blank SRC is an error, not the default:
    ``--checkpoint ''`` (an unset shell variable) must not quietly sample another model."""
    if src is not None and not str(src).strip():
        raise DidiError(f"the checkpoint is an empty name ({str(src)!r}); pass 'teacher', 'student', a checkpoint "
                        "path or a hub id, or leave the option out for the default")
    src = src or default
    if src in EMBEDDED:
        path = domain.embedded_teacher if src == "teacher" else domain.embedded_student
        if path is None or not Path(path).exists():
            make = (f"didi-seq pretrain --domain {domain.name}" if src == "teacher"
                    else f"didi-seq distill --domain {domain.name} --teacher TEACHER")
            raise DidiError(f"domain {domain.name!r} ships no embedded {src}; pass a checkpoint path or hub id, "
                            f"or train one: `{make} --out runs/{domain.name}-{src}`")
        return Path(path)
    p = Path(src)
    if p.exists():
        return p
    repo_id, _, revision = src.partition("@")
    if repo_id.count("/") == 1 and not src.startswith((".", "/")):
        return _from_hub_cache(repo_id, revision or None)
    raise CheckpointError(f"checkpoint {src} not found (expected a directory, a file, a hub id "
                          "[owner/name or owner/name@revision], or 'teacher'/'student')")


def _from_hub_cache(repo_id: str, revision: str | None = None) -> Path:
    """A hub checkpoint from the local cache only (HF_HUB_OFFLINE works); the format that
    recognises the snapshot then names any file it still lacks."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - hub raises many types; all mean "not cached"
        from ..io.hub import download_command

        raise DidiError(
            f"{repo_id}{'@' + revision if revision else ''} is not a local path and is not in the local Hugging Face "
            f"cache; run `{download_command(repo_id, revision=revision)}` where there is network (it fetches every file of "
            f"the repository), then retry"
        ) from None


def load_teacher(src: str | None, domain, default: str = "teacher", **options):
    """Returns (adapter, tokenizer) for ``domain``."""
    from ..registry.plugins import teacher_formats

    path = resolve_source(src, domain, default)
    formats = teacher_formats()
    for fmt in formats:
        if fmt.detect(path):
            adapter = fmt.load(path, domain=domain, **options)
            break
    else:
        names = ", ".join(f.name for f in formats)
        raise CheckpointError(f"{path}: not a checkpoint any teacher format recognises (known formats: {names})")
    adapter.provenance = source = SourceInfo.of(adapter.provenance)  # a plugin predating SourceInfo may give a dict
    trained_for = source.domain
    if trained_for not in (None, domain.name):
        raise CheckpointError(f"{path} is a {trained_for!r} checkpoint, not {domain.name!r}; pass --domain {trained_for}")
    try:
        adapter.spec.validate()
    except ValueError as e:
        raise CheckpointError(f"{path}: its teacher spec is invalid ({e})") from None
    # the format's own tokenizer, or the domain's reading of a checkpoint's tokenizer.json or of a name ("gpt2")
    tokenizer = adapter.own_tokenizer()
    if tokenizer is None:
        tok_file = source.tokenizer_file
        if tok_file:
            check_bounded_file(Path(tok_file), "tokenizer file", error=CheckpointError)  # before a tokenizer library reads it
        tokenizer = domain.load_tokenizer(Path(tok_file) if tok_file else source.tokenizer)
    if tokenizer.vocab_size != adapter.spec.vocab_size or tokenizer.mask_id != adapter.spec.mask_id:
        raise CheckpointError(
            f"{path}: vocabulary mismatch, checkpoint has vocab {adapter.spec.vocab_size} / mask id "
            f"{adapter.spec.mask_id} but the {domain.name} tokenizer has {tokenizer.vocab_size} / {tokenizer.mask_id}"
        )
    return adapter, tokenizer
