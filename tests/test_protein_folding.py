"""pLDDT through the toolkit's own loader: a tiny random EsmForProteinFolding saved to disk."""

import json

import pytest

from didi_seq.errors import DidiError
from didi_seq_protein.folding import fair_esm_unavailable, fold_all, load_folder
from didi_seq_protein.scorers import by_length, plddt_fraction_above_70
from protein_models import save_tiny_esmfold

SEQS = ["MKVLAAGICW", "ACDEFGHIKLMNPQRSTVWYACDEFGHIKL", "MSTNPKPQRK"]


@pytest.fixture(scope="module")
def fold_dir(tmp_path_factory):
    return save_tiny_esmfold(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


def test_scale_and_all_atom_mean(fold_dir):
    folder = load_folder(str(fold_dir))
    out = folder.model.infer([SEQS[0]])
    raw, exists = out["plddt"][0], out["atom37_atom_exists"][0]
    assert float(raw.max()) <= 1.0  # transformers reports 0-1
    expected = float((raw * exists).sum() / exists.sum()) * 100
    got = folder.fold([SEQS[0]])[0]
    assert got.plddt == pytest.approx(expected, rel=1e-5) and 0 <= got.plddt <= 100
    assert got.plddt_ca == pytest.approx(float(raw[:, 1].mean()) * 100, rel=1e-5)
    assert folder.info["backend"].startswith("transformers")


def test_padding_is_excluded(fold_dir):
    folder = load_folder(str(fold_dir))
    alone = [folder.fold([s])[0].plddt for s in SEQS]
    batched = [f.plddt for f in folder.fold(SEQS)]  # the short ones are padded to 30 residues here
    assert batched == pytest.approx(alone, abs=1e-3)
    assert len({round(v, 3) for v in alone}) > 1  # the perturbed head makes pLDDT differ between sequences


def test_fraction_above_70_on_the_0_100_scale(fold_dir, tmp_path):
    """Through the scorers: a confident model (model pLDDT ≈ 0.95) is above 70 everywhere, the default one nowhere."""
    from didi_seq.evaluation.harness import evaluate
    from didi_seq.registry.plugins import get_domain

    records = [{"sequence": s, "seed": 0, "index": i} for i, s in enumerate(SEQS)]
    confident = save_tiny_esmfold(tmp_path / "confident", confident=True)
    for model, fraction in ((confident, 1.0), (fold_dir, 0.0)):
        rec = evaluate(get_domain("protein"), records, metrics=["plddt", "plddt_above_70"], reference_samples=0,
                       options={"plddt_model": str(model)})
        assert rec["metrics"]["plddt_above_70"]["pooled"] == fraction
    assert rec["metrics"]["plddt"]["pooled"] < 70
    assert rec["scorers"]["plddt"]["by_length"]["1-100"]["n"] == 3


def test_fraction_above_70_and_buckets():
    stats = [{"plddt": 80.0, "length": 50}, {"plddt": 65.0, "length": 150}, {"plddt": 90.0, "length": 160}]
    assert plddt_fraction_above_70(stats) == pytest.approx(2 / 3)
    table = by_length(stats)
    assert table["1-100"] == {"n": 1, "mean_plddt": 80.0, "fraction_above_70": 1.0}
    assert table["101-200"]["n"] == 2 and table["101-200"]["mean_plddt"] == pytest.approx(77.5)


def test_pdb_files(fold_dir, tmp_path):
    res = fold_all(load_folder(str(fold_dir)), SEQS[:2], pdb_dir=tmp_path, names=["a", "b"])
    files = sorted(p.name for p in tmp_path.glob("*.pdb"))
    assert len(files) == 2 and files[0].startswith("a_plddt")
    atoms = [ln for ln in (tmp_path / files[0]).read_text().splitlines() if ln.startswith("ATOM")]
    b_factors = [float(ln[60:66]) for ln in atoms]
    assert atoms and max(b_factors) > 1.0 and abs(sum(b_factors) / len(b_factors) - res[0].plddt) < 1.0


def test_bad_folding_model_paths(tmp_path):
    with pytest.raises(DidiError, match="no readable config.json"):
        load_folder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "esm"}))
    with pytest.raises(DidiError, match="not an ESMFold"):
        load_folder(str(tmp_path))
    with pytest.raises(DidiError, match="not in the local Hugging Face cache"):
        load_folder("facebook/esmfold_not_cached")


def test_fair_esm_backend_reports_why_it_cannot_load():
    """Where openfold is missing (Python 3.11, CPU) the backend is refused with the import error named."""
    reason = fair_esm_unavailable()
    if reason is None:
        pytest.skip("fair-esm's ESMFold imports here (openfold present): nothing to report")
    with pytest.raises(DidiError, match="fair-esm's ESMFold does not import here"):
        load_folder("fair-esm")
