"""Turn a user's SRC (``teacher``, ``student``, a path, a hub id) into a TeacherAdapter.

Every format plugin is tried through its ``detect``; the domain and vocabulary are
checked here once so no command can sample a protein teacher with a text tokenizer.
A student's saved discriminator is loaded here too: rebuilding it means finding its teacher,
and ``didi_seq.models.networks`` cannot do that without an import cycle (the adapters import it).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DidiError
from ..io.provenance import SourceInfo
from ..io.untrusted import check_bounded_file

EMBEDDED = ("teacher", "student")


def resolve_source(src: str | None, domain, default: str = "teacher") -> Path:
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
            f"cache; run `{download_command(repo_id, revision=revision)}` where there is network (it fetches config.json "
            f"and model.safetensors), then retry"
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
    # a checkpoint's own tokenizer.json, or a tokenizer the format names (e.g. "gpt2")
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


def load_discriminator(student_dir, domain, teacher: str | None = None, bf16: bool = True):
    """The discriminator saved next to a student, rebuilt on the teacher whose trunk it shares.

    The teacher is found by weight hash: ``teacher`` if given, else the domain's embedded
    teacher, else the path recorded at distillation time.
    """
    from safetensors.torch import load_file

    from ..io.checkpoint import load_checkpoint
    from ..io.untrusted import read_json
    from .networks import DISC_CONFIG, DISC_FILE, Discriminator

    student_dir = Path(student_dir)
    if not (student_dir / DISC_FILE).is_file() or not (student_dir / DISC_CONFIG).is_file():
        raise DidiError(f"{student_dir} holds no discriminator ({DISC_FILE}); RGAS needs a DiDi-Instruct student "
                        "checkpoint (use --sampler ancestral for other checkpoints)")
    meta = read_json(student_dir / DISC_CONFIG, "discriminator config", error=CheckpointError)
    if not isinstance(meta, dict) or isinstance(meta.get("trainable_blocks"), bool) or not isinstance(meta.get("trainable_blocks"), int):
        raise CheckpointError(f"{student_dir / DISC_CONFIG} is not a discriminator config (no integer 'trainable_blocks')")
    want = meta.get("teacher_sha256")
    tried = []
    recorded = load_checkpoint(student_dir).provenance.get("teacher", {}).get("path")
    for src in ([teacher] if teacher else ["teacher", recorded]):
        if not src:
            continue
        try:
            adapter, _ = load_teacher(src, domain)
        except DidiError:
            if teacher:  # the user named this teacher: say why it cannot be used
                raise
            tried.append(str(src))
            continue
        if adapter.provenance.model_sha256 == want:
            disc = Discriminator(adapter.model, int(meta["trainable_blocks"]), adapter.schedule, bf16=bf16)
            disc.load_trainable_state(load_file(str(student_dir / DISC_FILE)), str(student_dir / DISC_FILE))
            return disc.eval()
        tried.append(f"{src} (sha256 {str(adapter.provenance.model_sha256)[:12]})")
    raise CheckpointError(f"{student_dir}: its discriminator was trained on teacher {meta.get('teacher_id')} (sha256 "
                          f"{str(want)[:12]}), which was not found (tried: {', '.join(tried) or 'nothing'}); pass --teacher")
