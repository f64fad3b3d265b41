"""The protein domain through the CLI: pretrain, distill, sample (both samplers), evaluate, errors."""

import dataclasses
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.models.loading import resolve_source
from didi_seq.registry.plugins import get_domain
from didi_seq_cli.main import app
from didi_seq_protein.alphabet import STANDARD
from didi_seq_protein.fasta import read_fasta
from protein_models import save_tiny_dplm, save_tiny_esmfold

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny FASTA corpus (5-30 residues) and a 4-step protein teacher trained on it."""
    d = tmp_path_factory.mktemp("protein")
    rng = random.Random(0)
    (d / "tiny.fasta").write_text("".join(f">s{i}\n{''.join(rng.choice(STANDARD) for _ in range(rng.randint(5, 30)))}\n"
                                          for i in range(60)))
    r = cli("pretrain", "--domain", "protein", "--preset", "protein-tiny", "--corpus", d / "tiny.fasta",
            "--out", d / "teacher", "--steps", 4)
    assert r.exit_code == 0, r.output
    return d


def test_pretrain_writes_a_variable_length_teacher(work):
    ckpt = load_checkpoint(work / "teacher")
    spec, model = ckpt.config["spec"], ckpt.config["model"]
    assert spec["pad_id"] == 1 and spec["never_mask"] == [0, 2] and model["pad_id"] == 1 and model["length"] == 34
    assert ckpt.provenance["val_nelbo"] > 0 and ckpt.provenance["corpus"].endswith("tiny.fasta")
    assert json.loads((ckpt.path / "tokenizer.json").read_text())["tokens"][32] == "<mask>"


@pytest.mark.parametrize("sampler", ["ancestral", "native"])
def test_sample_writes_jsonl_and_fasta(work, sampler):
    out = work / f"{sampler}.jsonl"
    r = cli("sample", "--domain", "protein", "--checkpoint", work / "teacher", "--nfe", 6, "--num-samples", 6,
            "--sampler", sampler, "--lengths", "8,20", "--output", out, "--batch-size", 4)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["length"] for r in recs] == [8, 8, 8, 20, 20, 20]
    assert all(set(r["sequence"]) <= set(STANDARD) and r["sampler"] == sampler and r["nfe"] == 6 for r in recs)
    fasta = read_fasta(out.with_suffix(".fasta"))
    assert [s for _, s in fasta] == [r["sequence"] for r in recs] and fasta[0][0] == "sample0_seed0"
    assert recs[0]["length_model"] == {"kind": "list", "lengths": [8, 20]}
    assert all(tok == 1 for tok in recs[0]["tokens"][10:])  # padding after <eos> stayed padding


def test_default_lengths_follow_the_corpus_and_seed(work):
    outs = []
    for name in ("a", "b"):
        r = cli("sample", "--domain", "protein", "--checkpoint", work / "teacher", "--nfe", 4, "--num-samples", 5,
                "--seed", 3, "--output", work / f"{name}.jsonl")
        assert r.exit_code == 0, r.output
        outs.append((work / f"{name}.jsonl").read_text())
    a = [json.loads(line) for line in outs[0].splitlines()]
    b = [json.loads(line) for line in outs[1].splitlines()]
    assert [x["sequence"] for x in a] == [x["sequence"] for x in b]
    assert a[0]["length_model"]["kind"] == "empirical" and all(1 <= x["length"] <= 32 for x in a)


def test_distill_a_few_steps_on_padded_rows(work):
    out = work / "student"
    r = cli("distill", "--domain", "protein", "--teacher", work / "teacher", "--corpus", work / "tiny.fasta", "--out", out,
            "--steps", 3, "--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 1, "--ckpt-every", 3)
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3 and all(torch.isfinite(torch.tensor(m["disc_loss"])) for m in metrics)
    assert "reward" in metrics[-1]
    r = cli("sample", "--domain", "protein", "--checkpoint", out, "--nfe", 4, "--num-samples", 3, "--lengths", "12")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("method", ["sdtt", "mmd"])
def test_real_data_methods_on_padded_rows(work, method):
    """SDTT and MMD through the same adapter on variable-length rows: they run, log, and the student samples."""
    out = work / f"student-{method}"
    r = cli("distill", "--domain", "protein", "--method", method, "--teacher", work / "teacher", "--corpus", work / "tiny.fasta",
            "--out", out, "--steps", 2, "--batch-size", 3, "--threads", 1,
            *(["--mmd-feature-block", 0] if method == "mmd" else []))  # the tiny teacher has one block
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    r = cli("sample", "--domain", "protein", "--checkpoint", out, "--nfe", 4, "--num-samples", 2, "--lengths", "12")
    assert r.exit_code == 0, r.output


def test_evaluate_offline_metrics_and_plddt(work):
    samples = work / "ancestral.jsonl"
    if not samples.exists():
        test_sample_writes_jsonl_and_fasta(work, "ancestral")
    fold = save_tiny_esmfold(work / "esmfold")
    r = cli("evaluate", "--domain", "protein", "--samples", samples, "--output", work / "e.json",
            "--reference-samples", 0, "--plddt-model", fold)  # real held-out sequences are up to 512 long: slow to fold
    assert r.exit_code == 0, r.output
    rec = json.loads((work / "e.json").read_text())
    names = set(rec["metrics"])
    assert {"aa_composition_js", "dipeptide_composition_js", "longest_homopolymer", "max_residue_fraction", "uniqueness",
            "mean_pairwise_identity", "length_w1", "plddt", "plddt_above_70", "entropy"} <= names
    assert 0 <= rec["metrics"]["plddt"]["mean"] <= 100 and "skipped_metrics" not in rec
    assert set(rec["scorers"]["plddt"]["by_length"]) == {"1-100"} and rec["scorers"]["plddt"]["by_length"]["1-100"]["n"] == 6
    assert "plddt by length: 1-100" in r.stdout  # printed by the plddt scorer's report, not by keys in the CLI
    assert not any("plddt" in n for n in names - {"plddt", "plddt_above_70"})  # no proxy is called pLDDT
    r = cli("evaluate", "--domain", "protein", "--samples", samples, "--reference-samples", 3, "--output", work / "r.json")
    assert r.exit_code == 0, r.output
    ref = json.loads((work / "r.json").read_text())
    assert ref["skipped_metrics"] == ["plddt", "plddt_above_70"] and ref["reference"]["num_blocks"] == 3
    assert ref["reference"]["values"]["length_w1"] < ref["metrics"]["length_w1"]["mean"]  # real lengths vs 8/20
    r = cli("evaluate", "--domain", "protein", "--samples", samples, "--metrics", "plddt")
    one_error_line(r, "needs --plddt-model")


def test_dplm_teacher_samples_through_the_cli(work):
    dplm = save_tiny_dplm(work / "dplm_tiny")
    out = work / "dplm.jsonl"
    r = cli("sample", "--domain", "protein", "--checkpoint", dplm, "--nfe", 5, "--num-samples", 3, "--sampler", "native",
            "--lengths", "15", "--output", out)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(x["sequence"]) == 15 for x in recs) and recs[0]["checkpoint"].startswith("dplm_tiny@")


def test_the_embedded_teacher_samples_framed_proteins(tmp_path):
    out = tmp_path / "t.jsonl"
    r = cli("sample", "--domain", "protein", "--checkpoint", "teacher", "--nfe", 4, "--num-samples", 2,
            "--lengths", "30,40", "--output", out)
    assert r.exit_code == 0, r.output
    seqs = [json.loads(line)["sequence"] for line in out.read_text().splitlines()]
    assert [len(x) for x in seqs] == [30, 40] and all(set(x) <= set(STANDARD) for x in seqs)
    assert load_checkpoint(get_domain("protein").embedded_teacher).provenance["kind"] == "teacher"


def test_a_domain_without_an_embedded_model_says_so():
    dom = dataclasses.replace(get_domain("protein"), embedded_teacher=None, embedded_student=None)
    for which in ("teacher", "student"):
        with pytest.raises(DidiError, match=f"domain 'protein' ships no embedded {which}; pass a checkpoint path"):
            resolve_source(which, dom, which)


def test_user_errors_are_one_line(work, tmp_path):
    one_error_line(cli("sample", "--domain", "protein", "--checkpoint", work / "teacher", "--nfe", 4, "--lengths", "99"),
                   "--lengths")
    one_error_line(cli("sample", "--domain", "protein", "--checkpoint", work / "teacher", "--nfe", 4, "--sampler", "nope"),
                   "available: ancestral, dilated, rgas, native")
    one_error_line(cli("sample", "--domain", "text", "--nfe", 4, "--sampler", "native"), "unknown or unavailable sampler")
    bad = tmp_path / "bad.fasta"
    bad.write_text(">ok\nMKV\n>oops\nMKJV\n")
    one_error_line(cli("pretrain", "--domain", "protein", "--preset", "protein-tiny", "--corpus", bad, "--out",
                       tmp_path / "o", "--steps", 2), "record 'oops' has invalid residue 'J' at position 3")
    assert not (tmp_path / "o").exists()


def test_distill_from_a_dplm_teacher_resume_and_sample_the_student(work):
    dplm = work / "dplm_tiny"
    if not dplm.exists():
        save_tiny_dplm(dplm)
    out = work / "dplm_student"
    base = ("distill", "--domain", "protein", "--teacher", dplm, "--corpus", work / "tiny.fasta", "--out", out,
            "--batch-size", 2, "--group-size", 2, "--disc-warmup-steps", 1, "--ckpt-every", 2)
    r = cli(*base, "--steps", 2)
    assert r.exit_code == 0, r.output
    r = cli(*base, "--steps", 3, "--resume")
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and metrics[1]["kl"] == pytest.approx(0.0, abs=1e-6)
    ckpt = load_checkpoint(out)
    assert ckpt.config["architecture"] == "esm" and ckpt.config["model"]["model_type"] == "esm"
    assert ckpt.provenance["teacher"]["id"].startswith("dplm_tiny@")
    r = cli("sample", "--domain", "protein", "--checkpoint", out, "--nfe", 4, "--num-samples", 2, "--lengths", "9",
            "--output", work / "dplm_student.jsonl")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (work / "dplm_student.jsonl").read_text().splitlines()]
    assert all(len(x["sequence"]) == 9 for x in recs) and recs[0]["checkpoint"].startswith("protein-student@")


def test_pretrain_on_the_embedded_corpus_and_pdb_output(tmp_path):
    r = cli("pretrain", "--domain", "protein", "--preset", "protein-tiny", "--out", tmp_path / "t", "--steps", 2)
    assert r.exit_code == 0, r.output
    prov = load_checkpoint(tmp_path / "t").provenance
    assert prov["corpus"] == "embedded:mmseqs2-examples-uniprot" and prov["train_blocks"] > 20  # sequences of ≤ 32 residues
    out = tmp_path / "s.jsonl"
    assert cli("sample", "--domain", "protein", "--checkpoint", tmp_path / "t", "--nfe", 3, "--num-samples", 2,
               "--output", out).exit_code == 0
    pdbs = tmp_path / "pdb"
    pdbs.mkdir()
    r = cli("evaluate", "--domain", "protein", "--samples", out, "--reference-samples", 0, "--plddt-model",
            save_tiny_esmfold(tmp_path / "fold"), "--pdb-dir", pdbs)
    assert r.exit_code == 0, r.output
    assert len(list(pdbs.glob("*.pdb"))) == 2 and "plddt by length" in r.output


def test_protein_benchmark_runs_at_a_tiny_setting(work):
    """The benchmark script end to end (numbers are not asserted: benchmarks are run by hand)."""
    import importlib.util
    from pathlib import Path

    if not (work / "student" / "LATEST").exists():
        test_distill_a_few_steps_on_padded_rows(work)
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "protein_nfe.py"
    spec = importlib.util.spec_from_file_location("protein_nfe", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fold = work / "esmfold" if (work / "esmfold").exists() else save_tiny_esmfold(work / "esmfold")
    out = bench.main(["--teacher", str(work / "teacher"), "--student", str(work / "student"), "--nfe", "2", "--native-nfe", "3",
                      "--samples", "4", "--seeds", "0", "1", "--reference-samples", "0", "--plddt-model", str(fold),
                      "--work", str(work / "bench"), "--out", str(work / "bench" / "result")])
    series = [(r["series"], r.get("nfe")) for r in out["rows"]]
    assert series == [("teacher ancestral", 2), ("teacher native", 3), ("student ancestral", 2)]
    native = out["rows"][1]
    assert native["network_calls_per_sample"] >= 3 / 4 and "plddt" in native and native["samples"] == 4
    assert (work / "bench" / "result.md").read_text().count("\n|") >= 4


def test_distill_against_a_teacher_sample_pool(work):
    """--positive teacher: the pool is drawn with the length model's frames, as wide as the teacher's rows."""
    out = work / "student_pool"
    r = cli("distill", "--domain", "protein", "--teacher", work / "teacher", "--out", out, "--steps", 2, "--batch-size", 2,
            "--group-size", 2, "--disc-warmup-steps", 1, "--positive", "teacher", "--teacher-pool", 4,
            "--teacher-pool-nfe", 2)
    assert r.exit_code == 0, r.output
    prov = load_checkpoint(out).provenance
    assert prov["teacher_pool"] == 4 and "reward" in [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
