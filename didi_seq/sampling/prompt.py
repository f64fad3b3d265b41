"""Prompts: the first tokens of a sample are given and stay fixed; only the answer is generated.

Masked-diffusion LLMs are used this way (LLaDA, arXiv 2502.09992, §2.3–2.4: the prompt stays
unmasked, only the response starts masked). A prompt is written into the start states right after
the domain's BOS at position 0, as every training row begins (``domain.data.pack_blocks`` /
``pad_rows``): ``[BOS] prompt mask…`` (a fixed-length domain's row; the answer fills the rest of
the model's row, or is ``--lengths N`` positions long and ends the row) or ``[BOS] prompt mask×n
[EOS] pad…`` (a variable-length domain; n, the answer's length, comes from the length model). Every
sampler keeps the positions that are not masked in its start states (``contract.fixed_positions``),
so the prompt needs nothing from any sampler; a sample is the whole row, the prompt followed by its answer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DidiError

# what ``--prompt`` / ``sample(prompt=...)`` take: one text, several texts, one or several lists of token ids
Prompt = str | list[str] | list[int] | list[list[int]]


def read_prompt(value: str) -> str:
    """``--prompt``'s text: the content of the file it names (one final line break dropped), else itself."""
    try:
        is_file = Path(value).is_file()
    except (OSError, ValueError):  # a long text is no file name (the OS refuses names over 255 bytes)
        is_file = False
    if is_file:
        from ..io.untrusted import read_text

        text = read_text(Path(value), "prompt file", limit=1 << 20)  # a prompt far beyond any model's context
        value = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if not value:
        raise DidiError(f"--prompt {'file ' if is_file else ''}is empty; leave --prompt out for unconditional samples")
    return value


def _is_ids(value) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def encode_prompts(prompt: Prompt, tokenizer, spec) -> list[list[int]]:
    """One token-id list per prompt: texts through the domain's tokenizer, ids as given (both without BOS).

    A wrong type is a TypeError (the Python API's callers get it at the call); an empty prompt, an id
    outside the vocabulary or the mask token is one ``DidiError`` naming the prompt."""
    if isinstance(prompt, str):
        texts, ids = [prompt], None
    elif _is_ids(prompt) and len(prompt):
        texts, ids = None, [list(prompt)]
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(p, str) for p in prompt):
        texts, ids = list(prompt), None
    elif isinstance(prompt, list | tuple) and prompt and all(_is_ids(p) for p in prompt):
        texts, ids = None, [list(p) for p in prompt]
    else:
        raise TypeError(f"prompt must be a text, a list of texts, or a list (or lists) of token ids, got {prompt!r}"[:200])
    if ids is None:
        empty = [k for k, text in enumerate(texts) if not text]
        if empty:
            raise DidiError(f"{_which(empty[0], len(texts))} is empty; leave the prompt out for unconditional samples")
        ids = [list(map(int, row)) for row in tokenizer.encode_batch(texts)]
    for k, row in enumerate(ids):
        which = _which(k, len(ids))
        if not row:
            raise DidiError(f"{which} is empty (no tokens); leave the prompt out for unconditional samples")
        bad = next((i for i in row if not 0 <= i < spec.vocab_size), None)
        if bad is not None:
            raise DidiError(f"{which} holds token id {bad}, outside the vocabulary (0..{spec.vocab_size - 1})")
        if spec.mask_id in row:
            raise DidiError(f"{which} holds the mask token (id {spec.mask_id}) at token {row.index(spec.mask_id) + 1}: "
                            "a prompt is fixed, and the mask marks only what is to be generated")
    return ids


def _which(k: int, n: int) -> str:
    return "the prompt" if n == 1 else f"prompt {k + 1} of {n}"


def prompted_states(x: torch.Tensor, prompts: list[list[int]], bos_id: int, mask_id: int) -> torch.Tensor:
    """Start states ``x`` [N, L] (all-mask rows, or framed rows ``[BOS] mask… [EOS] pad…``) with row i's
    ``prompts[i]`` written after BOS at position 0; each row keeps at least one masked position to generate."""
    x = x.clone()
    for i, ids in enumerate(prompts):
        room = int((x[i, 1:] == mask_id).cumprod(0).sum())  # the masks right after position 0
        if len(ids) >= room:
            raise DidiError(f"the prompt has {len(ids)} tokens: longer than the {room - 1} a row of {x.shape[1]} "
                            "positions holds after BOS with at least one position left to generate; pass a shorter "
                            "prompt")
        x[i, 0] = bos_id
        x[i, 1:1 + len(ids)] = torch.tensor(ids, dtype=x.dtype, device=x.device)
    return x
