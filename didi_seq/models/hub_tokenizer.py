"""A checkpoint's own ``tokenizer.json`` behind the DomainTokenizer contract, for teachers whose
vocabulary no domain knows (LLaDA, Dream).

Two things differ from a domain's tokenizer: the network has more rows than the tokenizer has
tokens (LLaDA: 126,464 rows for 126,349 tokens; Dream: 152,064 for 151,667), and the mask, BOS and
EOS are given by id in the model's config, not by name. ``vocab_size`` is therefore the row count,
and ``never_emit`` is decided here, once: rows without a token and every special token
(EOS/padding, BOS, chat and reserved markers). Samples are fixed-length windows of plain text, so
a special token would be either noise or, for the instruct models, the EOS padding that fills the
end of an answer (LLaDA's SFT pads answers with EOS, arXiv 2502.09992 §2.3).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..io.untrusted import check_bounded_file, read_json

TOKENIZER_FILE, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"


class HubTokenizer:
    """Implements ``didi_seq.domain.DomainTokenizer`` over a ``tokenizers.Tokenizer``."""

    def __init__(self, tok, rows: int, mask_id: int, bos_id: int, eos_id: int):
        # a literal "<|endoftext|>" inside a document stays text (as the text domain's tokenizer does)
        tok.encode_special_tokens = True
        self.tok, self.tokens = tok, tok.get_vocab_size(with_added_tokens=True)
        self.vocab_size, self.mask_id, self.bos_id, self.eos_id = rows, mask_id, bos_id, eos_id
        self.never_emit = never_emit_ids(tok, rows, mask_id)

    @classmethod
    def from_directory(cls, directory: Path, rows: int, mask_id: int, bos_id: int | None, eos_id: int | None) -> HubTokenizer:
        """``tokenizer.json`` of a checkpoint directory; a missing BOS/EOS id is looked up by the token
        ``tokenizer_config.json`` names (LLaDA's config.json gives no BOS)."""
        from tokenizers import Tokenizer

        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"{directory} has no {TOKENIZER_FILE}; didi-seq reads the tokenizer from it "
                                  "(download it with the weights, or save the model's tokenizer there)")
        check_bounded_file(path, "tokenizer file", error=CheckpointError)
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception on bad files
            raise CheckpointError(f"cannot read tokenizer {path}: {e}") from None
        named = _named_specials(directory, tok)
        bos = bos_id if bos_id is not None else named.get("bos_token")
        eos = eos_id if eos_id is not None else named.get("eos_token")
        if eos is None:
            raise CheckpointError(f"{directory}: neither config.json (eos_token_id) nor {TOKENIZER_CONFIG} names an EOS token")
        size = tok.get_vocab_size(with_added_tokens=True)
        for name, i in (("mask_token_id", mask_id), ("bos id", bos if bos is not None else eos), ("eos id", eos)):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < rows:
                raise CheckpointError(f"{directory}: {name} {i!r} is not a row of the {rows}-row vocabulary")
        if size > rows:
            raise CheckpointError(f"{path} has {size} tokens but the network only {rows} vocabulary rows; "
                                  "the tokenizer does not belong to these weights")
        return cls(tok, rows, mask_id, bos if bos is not None else eos, eos)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i < self.tokens], skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tok.to_str()


def never_emit_ids(tok, rows: int, mask_id: int) -> list[int]:
    """Ids a sampler must never draw: rows past the tokenizer (and holes in it), and every token the
    tokenizer marks special. The mask is excluded here: SUBS forbids it on its own."""
    special = {i for i, added in tok.get_added_tokens_decoder().items() if added.special}
    size = tok.get_vocab_size(with_added_tokens=True)
    holes = {i for i in range(size) if tok.id_to_token(i) is None}
    return sorted((special | holes | set(range(size, rows))) - {mask_id})


def _named_specials(directory: Path, tok) -> dict[str, int]:
    """bos/eos ids of the tokens ``tokenizer_config.json`` names (a string or {"content": ...})."""
    path = directory / TOKENIZER_CONFIG
    if not path.is_file():
        return {}
    cfg = read_json(path, "tokenizer config", error=CheckpointError)
    out = {}
    for key in ("bos_token", "eos_token"):
        value = cfg.get(key) if isinstance(cfg, dict) else None
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and tok.token_to_id(value) is not None:
            out[key] = tok.token_to_id(value)
    return out
