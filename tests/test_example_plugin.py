"""The worked third-party plugin (examples/didi-seq-dna) installed by pip and driven through
the real CLI: pretrain → distill → sample → evaluate on a tiny configuration.

It is installed into a private ``--target`` directory put on PYTHONPATH for the
subprocesses only, so the test's own environment (where the known domains are exactly
the built-in ones) is left as it was. Slow-marked: ~45 s on 2 busy cores, mostly the
eight interpreter starts; it runs in .ci/run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "didi-seq-dna"


@pytest.fixture(scope="module")
def didi(tmp_path_factory):
    """A function running ``didi-seq ARGS`` with the example plugin installed."""
    site = tmp_path_factory.mktemp("site")
    # --no-build-isolation: setuptools is already there (torch depends on it), so no download is needed
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(EXAMPLE)], check=True, capture_output=True)
    # a wide console: rich wraps the plugins line at 80 columns, wherever the entry-point order puts the break
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}

    def run(*args, ok=True):
        r = subprocess.run([sys.executable, "-m", "didi_seq_cli.main", *map(str, args)], env=env,
                           capture_output=True, text=True, cwd=site)
        if ok:
            assert r.returncode == 0, r.stderr[-3000:]
        return r

    return run


def test_the_plugin_is_found_through_its_own_entry_point(didi):
    out = didi("plugins").stdout
    assert "dna" in out and "didi-seq-dna 0.1.0" in out and "gc_content" in out


def test_pretrain_distill_sample_evaluate(didi, tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    didi("pretrain", "--domain", "dna", "--steps", 20, "--length", 32, "--ckpt-every", 10, "--threads", 1, "--out", teacher)
    didi("distill", "--domain", "dna", "--teacher", teacher, "--steps", 4, "--ckpt-every", 2, "--batch-size", 2,
         "--group-size", 2, "--disc-warmup-steps", 1, "--threads", 1, "--out", student)
    samples = tmp_path / "s.jsonl"
    didi("sample", "--domain", "dna", "--checkpoint", student, "--nfe", 4, "--num-samples", 3, "--output", samples)
    recs = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(recs) == 3 and all(r["domain"] == "dna" and r["checkpoint"].startswith("dna-student@") for r in recs)
    assert all(len(r["sequence"]) == 32 and set(r["sequence"]) <= set("ACGT|") for r in recs)
    result = tmp_path / "e.json"
    didi("evaluate", "--domain", "dna", "--samples", samples, "--output", result, "--reference-samples", 8)
    record = json.loads(result.read_text())
    assert set(record["metrics"]) == {"gc_content", "entropy", "rep_2", "rep_3", "rep_4"}  # the core scorers apply to every domain
    assert 0.0 <= record["metrics"]["gc_content"]["mean"] <= 1.0
    assert 0.3 < record["reference"]["values"]["gc_content"] < 0.6  # held-out lambda DNA scored the same way


def test_embedded_defaults_sample_offline(didi, tmp_path):
    out = tmp_path / "t.jsonl"
    didi("sample", "--domain", "dna", "--checkpoint", "teacher", "--nfe", 8, "--num-samples", 2, "--output", out)
    assert all(json.loads(line)["checkpoint"].startswith("dna-teacher@") for line in out.read_text().splitlines())
    # no --checkpoint: the embedded student; rgas rebuilds its discriminator on the embedded teacher
    didi("sample", "--domain", "dna", "--sampler", "rgas", "--nfe", 8, "--num-samples", 2, "--output", out)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["checkpoint"].startswith("dna-student@") and r["run"]["discriminator_calls"] > 0 for r in recs)


@pytest.mark.parametrize(("content", "fragment"), [
    (">seq1\nACGTXACGT\n", "invalid letter(s) 'X'"),
    (">only a header\n", "holds no FASTA records"),
])
def test_bad_fasta_is_one_error_line(didi, tmp_path, content, fragment):
    bad = tmp_path / "bad.fa"
    bad.write_text(content)
    r = didi("pretrain", "--domain", "dna", "--corpus", bad, "--out", tmp_path / "o", ok=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr
    assert not (tmp_path / "o").exists()
