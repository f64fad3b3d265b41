"""Protein alphabet, FASTA I/O, length models and the offline metrics, on hand-made inputs."""

import gzip
import math

import pytest
import torch

from didi_seq.domain.data import pad_rows, trim_padding
from didi_seq.domain.lengths import EmpiricalLengths, parse_lengths
from didi_seq.errors import DidiError
from didi_seq.models.process import framed_prior
from didi_seq_protein import metrics as m
from didi_seq_protein.alphabet import STANDARD, ProteinTokenizer
from didi_seq_protein.fasta import read_fasta, write_fasta


def test_esm_alphabet_ids_and_special_sets(tmp_path):
    tok = ProteinTokenizer()
    assert tok.vocab_size == 33 and (tok.bos_id, tok.pad_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 32)
    assert tok.tokens[4:24] == tuple("LAGVSERTIDPKQNFYMHWC") and tok.x_id == 24
    assert set(tok.never_emit) == set(range(33)) - {tok.index[a] for a in STANDARD} - {32}
    assert {0, 1, 2, 3, 31, 24} <= set(tok.never_emit) and tok.never_mask == [0, 2]
    ids = tok.encode("MKV")
    assert tok.decode([0, *ids, 2, 1, 1]) == "MKV"
    saved = tmp_path / "tok.json"
    saved.write_text(tok.to_json())
    assert ProteinTokenizer.from_file(saved).tokens == tok.tokens
    saved.write_text(tok.to_json().replace("<mask>", "<MASK>"))
    with pytest.raises(DidiError, match="differs"):
        ProteinTokenizer.from_file(saved)


def test_encode_names_bad_letter_position():
    with pytest.raises(DidiError, match=r"invalid residue 'B' at position 3"):
        ProteinTokenizer().encode("MKBV")


def test_fasta_round_trip_and_gzip(tmp_path):
    recs = [("p1", "MKVLAAGIC"), ("p2", "W" * 130)]
    write_fasta(tmp_path / "a.fasta", recs)
    assert read_fasta(tmp_path / "a.fasta") == recs
    with gzip.open(tmp_path / "b.fasta.gz", "wt") as f:
        f.write(">x desc\nmkv*\n")
    assert read_fasta(tmp_path / "b.fasta.gz") == [("x", "MKV")]


def test_fasta_bad_letters_name_record_and_position(tmp_path):
    (tmp_path / "bad.fasta").write_text(">good\nMKV\n>sp|Q1|BAD\nMKVXL\n")
    with pytest.raises(DidiError, match=r"record 'sp\|Q1\|BAD' has invalid residue 'X' at position 4"):
        read_fasta(tmp_path / "bad.fasta")
    (tmp_path / "text.fasta").write_text("just text\n")
    with pytest.raises(DidiError, match="not a FASTA file"):
        read_fasta(tmp_path / "text.fasta")
    (tmp_path / "empty.fasta").write_text("")
    with pytest.raises(DidiError, match="no FASTA records"):
        read_fasta(tmp_path / "empty.fasta")


def test_length_models():
    gen = torch.Generator().manual_seed(0)
    assert parse_lengths("7", 50, None).draw(3, gen) == [7, 7, 7]
    assert parse_lengths("10,20,30", 50, None).draw(7, gen) == [10, 10, 10, 20, 20, 30, 30]
    emp = EmpiricalLengths([5, 5, 5, 9, 400], "test", 50)
    draws = emp.draw(2000, torch.Generator().manual_seed(1))
    assert set(draws) == {5, 9} and 0.7 < draws.count(5) / 2000 < 0.8  # 3:1, the too-long 400 left out
    assert emp.describe()["left_out_too_long"] == 1
    assert emp.draw(5, torch.Generator().manual_seed(2)) == emp.draw(5, torch.Generator().manual_seed(2))
    for bad in ("0", "60", "a,b"):
        with pytest.raises(DidiError, match="--lengths"):
            parse_lengths(bad, 50, None)


def test_pad_rows_and_framed_prior():
    import datasets

    tok = ProteinTokenizer()
    ds = datasets.Dataset.from_dict({"text": ["MK", "ACDEFG", "W" * 9]})
    rows = pad_rows(ds, tok, 8)  # 9 residues do not fit in 6: left out, not cut
    assert rows.tolist() == [[0, *tok.encode("MK"), 2, 1, 1, 1, 1], [0, *tok.encode("ACDEFG"), 2]]
    assert trim_padding(rows[:1], tok.pad_id).shape == (1, 4)
    x = framed_prior([2, 4], 32, 0, 2, 1)
    assert x.tolist() == [[0, 32, 32, 2, 1, 1], [0, 32, 32, 32, 32, 2]]


def test_offline_metrics_known_answers():
    assert m.composition_js(["ACDA"], ["ACDA", "ACDA"], 1) == pytest.approx(0.0)
    assert m.composition_js(["AAAA"], ["CCCC"], 1) == pytest.approx(math.log(2))
    assert m.composition_js(["ACAC"], ["CACA"], 2) > 0  # same letters, different dipeptide shares
    assert m.longest_homopolymer("MAAAKAA") == 3 and m.longest_homopolymer("M") == 1
    assert m.max_residue_fraction("AAKK") == 0.5 and m.max_residue_fraction("MAAAKAA") == pytest.approx(5 / 7)
    assert m.uniqueness(["MK", "MK", "AC", "DE"]) == 0.75
    assert m.lcs_identity("ACDE", "ACE") == 0.75 and m.lcs_identity("AAAA", "CCCC") == 0.0
    assert m.lcs_identity("ACDEF", "ACDEW") == pytest.approx(0.8)
    assert m.mean_pairwise_identity(["AAAA", "AAAA", "CCCC"]) == pytest.approx(1 / 3)
    assert m.wasserstein_1([1, 2], [3, 4]) == pytest.approx(2.0) and m.wasserstein_1([5, 5], [5]) == 0.0
