"""Block packing on top of ``datasets``: documents → fixed-length training rows.

MDLM's wrapping: every document gets an EOS appended, documents are concatenated,
cut into chunks of L−2 tokens and each chunk becomes ``[BOS] chunk [EOS]``; the tail
that does not fill a block is dropped. Rows therefore never need padding.
"""

from __future__ import annotations

import hashlib

import torch

from .errors import DidiError


def text_hash(dataset, column: str = "text") -> str:
    """sha256 over the documents in order: recorded so results name their exact data."""
    h = hashlib.sha256()
    for batch in dataset.select_columns([column]).iter(batch_size=1000):  # OWT's 100k documents: not all in memory
        for text in batch[column]:
            h.update(text.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()


def pack_blocks(dataset, tokenizer, length: int, column: str = "text", num_proc: int | None = None) -> torch.Tensor:
    """Tokenize a ``datasets.Dataset`` of documents and pack it into a LongTensor [N, length]."""
    if length < 3:
        raise DidiError(f"sequence length must be at least 3, got {length}")
    if len(dataset) == 0:
        raise DidiError("the corpus is empty: no documents to train on")
    body = length - 2
    bos, eos = tokenizer.bos_id, tokenizer.eos_id

    def tokenize_and_pack(batch):
        stream: list[int] = []
        for ids in tokenizer.encode_batch([t for t in batch[column] if t]):
            stream.extend(ids)
            stream.append(eos)
        n = len(stream) // body
        return {"ids": [[bos, *stream[i * body:(i + 1) * body], eos] for i in range(n)]}

    packed = dataset.map(
        tokenize_and_pack, batched=True, batch_size=64, remove_columns=dataset.column_names,
        num_proc=num_proc, desc=f"packing into {length}-token blocks",
    )
    if len(packed) == 0:
        raise DidiError(f"the corpus is too small for even one {length}-token block")
    packed.set_format("torch", columns=["ids"])
    return packed["ids"]
