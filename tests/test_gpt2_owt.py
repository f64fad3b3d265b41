"""GPT-2 tokenization (offline files) and OpenWebText's split and BOS…EOS wrapping."""

import json
import shutil

import pytest

from didi_seq.domain.data import pack_blocks, text_hash
from didi_seq.errors import DidiError
from didi_seq.registry.plugins import get_domain
from didi_seq_text import gpt2, owt
from didi_seq_text.corpus import load_text_corpus, read_local

SENTENCE = "The quick brown fox jumps over the lazy dog."
SENTENCE_IDS = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]  # GPT-2 / tiktoken r50k_base


@pytest.fixture(scope="module")
def tok():
    return get_domain("text").load_tokenizer("gpt2")


def test_gpt2_known_ids_and_special_ids(tok):
    assert tok.encode_batch([SENTENCE, "Hello world"]) == [SENTENCE_IDS, [15496, 995]]
    assert (tok.vocab_size, tok.mask_id, tok.bos_id, tok.eos_id) == (50258, 50257, 50256, 50256)
    text = "naïve café — 東京 🙂\n  indented"
    assert tok.decode(tok.encode_batch([text])[0]) == text
    # a literal "<mask>" / "<|endoftext|>" in a document is text, never a special id
    ids = tok.encode_batch(["a <mask> b <|endoftext|>"])[0]
    assert 50257 not in ids and 50256 not in ids and tok.decode(ids) == "a <mask> b <|endoftext|>"


def test_gpt2_from_a_local_vocab_merges_pair(tok, tmp_path, monkeypatch):
    vocab, merges = gpt2.find_files()
    shutil.copy(vocab, tmp_path / "vocab.json")
    shutil.copy(merges, tmp_path / "merges.txt")
    assert get_domain("text").load_tokenizer(str(tmp_path)).encode_batch([SENTENCE]) == [SENTENCE_IDS]
    monkeypatch.setenv("DIDI_SEQ_GPT2_DIR", str(tmp_path))
    assert gpt2.find_files() == (tmp_path / "vocab.json", tmp_path / "merges.txt")
    with pytest.raises(DidiError, match="holds no GPT-2 vocab.json"):
        gpt2.find_files(tmp_path / "nowhere")


def test_gpt2_files_found_by_didi_seq_must_be_openais(tmp_path, monkeypatch):
    """The package/cache copy is checked against OpenAI's hashes: two swapped merges keep the
    vocabulary size and end-of-text id (what ``build`` checks) but change the tokenization."""
    vocab, merges = gpt2.find_files()
    assert gpt2.check_official((vocab, merges)) == (vocab, merges)
    lines = merges.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    (tmp_path / "encoder.json").write_bytes(vocab.read_bytes())
    (tmp_path / "vocab.bpe").write_text("".join(lines), encoding="utf-8")
    tampered = (tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    monkeypatch.delenv("DIDI_SEQ_GPT2_DIR", raising=False)
    monkeypatch.setattr(gpt2, "_from_hf_cache", lambda: None)
    monkeypatch.setattr(gpt2, "_from_pypi_package", lambda: tampered)
    with pytest.raises(DidiError, match=r"vocab.bpe is not OpenAI's GPT-2 file \(sha256 "):
        gpt2.find_files()
    assert gpt2.find_files(tmp_path) == tampered  # a directory the user names is theirs to vouch for


def _owt_file(path, n_docs):
    docs = [f"Document {i} says hello to the world {i * 7} times." * (1 + i % 3) for i in range(n_docs)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return docs


def test_owt_wrapping_matches_the_documented_block_layout(tok, tmp_path):
    """Documents joined with EOS, cut into L−2 token chunks, each row BOS chunk EOS."""
    docs = _owt_file(tmp_path / "owt.jsonl", 20)
    L = 16
    blocks = pack_blocks(read_local(str(tmp_path / "owt.jsonl")), tok, L)[:]  # a datasets column → tensor
    stream = [t for ids in tok.encode_batch(docs) for t in (*ids, 50256)]
    n = len(stream) // (L - 2)
    assert blocks.shape == (n, L)
    assert (blocks[:, 0] == 50256).all() and (blocks[:, -1] == 50256).all()
    assert blocks[:, 1:-1].reshape(-1).tolist() == stream[: n * (L - 2)]  # remainder dropped


def test_owt_split_is_the_last_documents_with_a_hash(tmp_path):
    docs = _owt_file(tmp_path / "owt.jsonl", 10)
    data = owt.mdlm_split(read_local(str(tmp_path / "owt.jsonl")), validation_docs=3)
    assert data["validation"]["text"] == docs[-3:] and data["train"]["text"] == docs[:-3]
    assert data["validation_sha256"] == text_hash(data["validation"]) and len(data["validation_sha256"]) == 64
    assert "train[-3:]" in data["split"]


def test_owt_local_copy_too_small_and_hub_not_cached(tmp_path):
    _owt_file(tmp_path / "owt.jsonl", 10)
    with pytest.raises(DidiError, match="has 10 documents; OpenWebText's split holds out the last 100,000"):
        load_text_corpus(f"owt:{tmp_path / 'owt.jsonl'}")
    with pytest.raises(DidiError, match="cannot load the hub dataset openwebtext"):
        load_text_corpus("openwebtext")
