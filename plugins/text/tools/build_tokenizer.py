"""Train the embedded byte-level BPE and choose its vocabulary size by measurement.

For each candidate size we measure (a) bytes per token on the validation split and
(b) the wall-clock of one bf16 training step of the embedded teacher's shape at that
vocabulary; the cost of learning the corpus scales with seconds per *byte*, so we keep
the size with the lowest (step seconds / tokens per step) / bytes-per-token.

    python plugins/text/tools/build_tokenizer.py   # writes assets/tokenizer.json + tokenizer_choice.json
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import torch

from didi_seq import DiT, DiTConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CANDIDATES = (4096, 6144, 8192)
SPECIALS = ["<|endoftext|>", "<mask>"]


def docs(split: str) -> list[str]:
    with gzip.open(ASSETS / "corpus" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def train(vocab: int, texts: list[str]):
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab, min_frequency=2, special_tokens=SPECIALS)
    return tok


def step_seconds(vocab: int, length: int = 256, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = DiT(DiTConfig(vocab_size=vocab, length=length))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, vocab, (batch, length))
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float().flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    train_docs, val_docs = docs("train"), docs("validation")
    val_bytes = sum(len(t.encode()) for t in val_docs)
    rows, toks = [], {}
    for vocab in CANDIDATES:
        tok = train(vocab, train_docs)
        n = sum(len(e.ids) for e in tok.encode_batch(val_docs))
        bpt = val_bytes / n
        s = step_seconds(vocab)
        rows.append({"vocab": vocab, "bytes_per_token": round(bpt, 3), "step_s": round(s, 3),
                     "us_per_byte": round(1e6 * s / (32 * 256 * bpt), 2)})
        toks[vocab] = tok
        print(rows[-1], flush=True)
    best = min(rows, key=lambda r: r["us_per_byte"])
    toks[best["vocab"]].save(str(ASSETS / "tokenizer.json"))
    (ASSETS / "tokenizer_choice.json").write_text(json.dumps({"chosen": best["vocab"], "candidates": rows}, indent=2) + "\n")
    print("chosen", best)


if __name__ == "__main__":
    main()
