"""SDTT and MMD on real adapters: their steps on padded protein rows, and both through the CLI on a tiny text teacher."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.distill.mmd import mmd_step, resolve_alpha
from didi_seq.distill.real_data_config import MMDConfig, SDTTConfig
from didi_seq.distill.sdtt import round_delta, sdtt_step
from didi_seq.errors import DidiError
from didi_seq.io.checkpoint import load_checkpoint
from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import NativeTeacher, TeacherSpec
from didi_seq.training.distributed import RowNoise
from didi_seq_cli.main import app


def protein_teacher(layers=2):
    """A tiny DiT over the real ESM alphabet, with padding hidden from attention (as the protein domain's teacher)."""
    from didi_seq_protein.alphabet import ProteinTokenizer

    tok = ProteinTokenizer()
    torch.manual_seed(0)
    model = DiT(DiTConfig(vocab_size=tok.vocab_size, length=24, hidden=32, layers=layers, heads=2, cond_dim=16,
                          pad_id=tok.pad_id))
    torch.nn.init.normal_(model.output_layer.linear.weight, std=0.5)
    for b in model.blocks:  # zero-initialised gates would make every block the identity (no context)
        torch.nn.init.normal_(b.adaLN_modulation.bias, std=0.5)
    spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=24, never_emit=list(tok.never_emit),
                       never_mask=list(tok.never_mask), pad_id=tok.pad_id)
    return NativeTeacher(model, spec, LogLinearSchedule(), {"id": "tiny-protein"}, bf16=False), tok


def protein_rows(tok, lengths=(5, 12, 20, 9), width=22):
    g = torch.Generator().manual_seed(3)
    rows = torch.full((len(lengths), width), tok.pad_id)
    for i, n in enumerate(lengths):
        res = torch.tensor(tok.residue_ids)[torch.randint(len(tok.residue_ids), (n,), generator=g)]
        rows[i, 0], rows[i, 1:n + 1], rows[i, n + 1] = tok.bos_id, res, tok.eos_id
    return rows


def grads_stay_finite_and_reach(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("method", ["sdtt", "mmd"])
def test_step_on_padded_protein_rows(method):
    teacher, tok = protein_teacher()
    x0 = protein_rows(tok)
    maskable = teacher.spec.maskable(x0)
    student = teacher.student_copy()
    student_fn, teacher_fn = teacher.denoiser(student, bf16=False), teacher.denoiser(teacher.model, bf16=False)
    gen = torch.Generator().manual_seed(0)
    noise = RowNoise(gen, len(x0))
    if method == "sdtt":
        cfg = SDTTConfig()
        loss, metrics = sdtt_step(teacher_fn, student_fn, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg,
                                  round_delta(3, cfg.start_nfe), gen, noise)
        assert loss.item() == pytest.approx(0.0, abs=1e-5)  # student = teacher: the target is its own prediction…
        delta = 0.25  # …unless the teacher's steps reveal context the student's one step did not see
        loss, metrics = sdtt_step(teacher_fn, student_fn, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg,
                                  delta, gen, noise)
        assert loss.item() > 0
    else:
        cfg = MMDConfig(kl_coef=0.1)
        features = teacher.trunk_features(cfg.feature_block, bf16=False)
        alpha = resolve_alpha(cfg.alpha, features, x0, maskable)
        assert 0 < alpha < float("inf")
        loss, metrics = mmd_step(student_fn, features, x0, maskable, teacher.schedule, teacher.spec.mask_id, cfg, alpha,
                                 gen, noise, teacher=teacher_fn)
        assert {"reward", "advantage_abs", "entropy", "fill_entropy", "fill_rep1", "kl"} <= set(metrics)
        assert metrics["kl"].item() == pytest.approx(0.0, abs=1e-5)
    assert all(torch.isfinite(v) for v in metrics.values())
    loss.backward()
    assert grads_stay_finite_and_reach(student)


def test_padding_and_specials_never_change():
    """MMD fills and SDTT targets only touch maskable positions: <cls>, <eos>, <pad> stay as they are."""
    from didi_seq.distill.mmd import draw_fills

    teacher, tok = protein_teacher()
    x0 = protein_rows(tok)
    maskable = teacher.spec.maskable(x0)
    fn = teacher.denoiser(teacher.model, bf16=False)
    lp = fn(x0, maskable, torch.ones(len(x0)))
    fills = draw_fills(lp, x0, maskable, 2, 2, torch.Generator().manual_seed(0))
    frozen = ~maskable
    assert bool((fills[:, :, :, :][frozen[:, None, None].expand_as(fills)] ==
                 x0[:, None, None].expand_as(fills)[frozen[:, None, None].expand_as(fills)]).all())
    assert bool(torch.isin(fills[maskable[:, None, None].expand_as(fills)], torch.tensor(tok.residue_ids)).all())


def test_feature_block_beyond_the_trunk_is_one_clear_error():
    teacher, _ = protein_teacher(layers=1)
    with pytest.raises(DidiError, match="at least 2 blocks; tiny-protein has 1"):
        teacher.trunk_features(1)
    assert teacher.trunk_features(0)(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 32)


# -- through the CLI, on the tiny text checkpoint (1 block) -----------------------------------------
runner = CliRunner()
FAST = {"sdtt": ["--batch-size", "2", "--sdtt-steps-per-round", "2", "--sdtt-rounds", "2"],
        "mmd": ["--batch-size", "2", "--mmd-feature-block", "0"]}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """A few KB of text: packing the embedded corpus would dominate these tests' time."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(100)))
    return path


def distill(*args):
    return runner.invoke(app, ["distill", "--domain", "text", "--threads", "1", *map(str, args)])


@pytest.mark.parametrize("method, extra", [("sdtt", []), ("mmd", []), ("mmd", ["--mmd-credit", "token"])])
def test_cli_runs_and_resumes_exactly(method, extra, tiny_ckpt, small_corpus, tmp_path):
    """4 steps straight == 3 steps, then --resume to 4 (SDTT resumes inside round 1, on its saved round teacher)."""
    from safetensors.torch import load_file

    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("--method", method, "--teacher", tiny_ckpt, "--corpus", small_corpus, *FAST[method], *extra)
    r = distill(*common, "--out", straight, "--steps", 4)
    assert r.exit_code == 0, r.output
    assert distill(*common, "--out", split, "--steps", 3).exit_code == 0
    r = distill(*common, "--out", split, "--steps", 4, "--resume")
    assert r.exit_code == 0, r.output
    a, b = (load_file(str(load_checkpoint(d).path / "model.safetensors")) for d in (straight, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4] and all(math.isfinite(m["loss"]) for m in lines)
    ckpt = load_checkpoint(straight)
    assert ckpt.provenance["method"] == method
    if method == "sdtt":
        assert [m["round"] for m in lines] == [0, 0, 1, 1] and lines[-1]["student_nfe"] == 1024 / 4
    else:
        assert {"reward", "fill_entropy", "fill_rep1", "entropy", "kl"} <= set(lines[-1])
        assert ckpt.provenance["mmd_alpha"] > 0 and ckpt.provenance["mmd_feature_block"] == 0
        assert ckpt.provenance["mmd_credit"] == ("token" if extra else "sequence")
    s = runner.invoke(app, ["sample", "--domain", "text", "--checkpoint", str(straight), "--nfe", "2", "--num-samples", "1"])
    assert s.exit_code == 0, s.output


@pytest.mark.parametrize("args, fragment", [
    (["--method", "mmd"], "MMD feature block 1 (zero-based) needs a teacher trunk of at least 2 blocks"),
    (["--method", "sdtt", "--mmd-alpha", "1e-3"], "--mmd-alpha is an option of --method mmd, not of --method sdtt"),
    (["--method", "mmd", "--sdtt-rounds", "3"], "--sdtt-rounds is an option of --method sdtt, not of --method mmd"),
    (["--sdtt-divergence", "forward"], "--sdtt-divergence is an option of --method sdtt, not of --method didi-instruct"),
    (["--method", "sdtt", "--disc-lr", "1e-3"], "--disc-lr is an option of --method didi-instruct, not of --method sdtt"),
    (["--method", "sdtt", "--sdtt-divergence", "mse"], "--sdtt-divergence must be reverse or forward"),
    (["--method", "sdtt", "--sdtt-start-nfe", "1000"], "must divide by 2 7 times"),
    (["--method", "mmd", "--mmd-groups", "1"], "--mmd-groups must be at least 2"),
    (["--method", "mmd", "--mmd-alpha", "-1"], "--mmd-alpha must be positive"),
    (["--method", "mmd", "--mmd-credit", "tokens"], "--mmd-credit must be sequence or token"),
])
def test_bad_method_input_is_one_error_line(args, fragment, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    one_error_line(distill("--teacher", tiny_ckpt, "--out", out, "--steps", 1, *args), fragment)
    assert not out.exists()


def test_resume_with_the_other_real_data_method_is_refused(tiny_ckpt, small_corpus, tmp_path):
    out = tmp_path / "run"
    r = distill("--method", "sdtt", "--teacher", tiny_ckpt, "--corpus", small_corpus, "--out", out, "--steps", 1, *FAST["sdtt"])
    assert r.exit_code == 0, r.output
    before = (out / "metrics.jsonl").read_text()
    one_error_line(distill("--method", "mmd", "--teacher", tiny_ckpt, "--corpus", small_corpus, "--out", out, "--steps", 2,
                           "--resume", *FAST["mmd"]),
                   "is a --method sdtt run, not mmd")
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sdtt", "mmd"])
def test_two_gloo_ranks_follow_one_process(method, tmp_path):
    """The global batch split over 2 ranks takes the 1-process trajectory (training/distributed.py's convention)."""
    from test_distributed import assert_same_trajectory, assert_same_weights, corpus, in_process, torchrun

    from conftest import build_tiny_checkpoint

    teacher = build_tiny_checkpoint(tmp_path / "teacher")
    common = ["distill", "--domain", "text", "--method", method, "--teacher", teacher, "--corpus", corpus(tmp_path),
              "--steps", 4, "--ckpt-every", 2, "--threads", 1, *FAST[method]]
    torchrun(*common, "--out", tmp_path / "two")
    in_process(*common, "--out", tmp_path / "one")
    assert_same_trajectory(tmp_path / "one", tmp_path / "two", ["loss", "entropy", "reward", "fill_entropy", "kl", "round"])
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def esm_teacher():
    """A tiny random EsmForMaskedLM behind the DPLM adapter (the protein domain's real teachers)."""
    from transformers import EsmForMaskedLM

    from didi_seq_protein.alphabet import ProteinTokenizer
    from didi_seq_protein.dplm import EsmTeacher
    from protein_models import esm_config

    tok = ProteinTokenizer()
    torch.manual_seed(0)
    model = EsmForMaskedLM(esm_config())
    spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=24, never_emit=list(tok.never_emit),
                       never_mask=list(tok.never_mask), pad_id=tok.pad_id)
    return EsmTeacher(model, spec, {"id": "tiny-esm"}), tok


def test_both_steps_run_on_an_esm_teacher_with_its_layer_features():
    teacher, tok = esm_teacher()
    x0 = protein_rows(tok)
    maskable = teacher.spec.maskable(x0)
    feats = teacher.trunk_features(0, bf16=False)
    with torch.no_grad():
        full = teacher.model.esm(input_ids=x0, attention_mask=(x0 != tok.pad_id).long(), output_hidden_states=True)
    assert torch.allclose(feats(x0), full.hidden_states[1], atol=1e-5)  # the output of layer 0, not the trunk's end
    with pytest.raises(DidiError, match="at least 3 blocks; tiny-esm has 2"):
        teacher.trunk_features(2)
    for method in ("sdtt", "mmd"):
        student = teacher.student_copy()
        fn, gen = teacher.denoiser(student, bf16=False), torch.Generator().manual_seed(0)
        noise = RowNoise(gen, len(x0))
        if method == "sdtt":
            loss, _ = sdtt_step(teacher.denoiser(teacher.model, bf16=False), fn, x0, maskable, teacher.schedule,
                                tok.mask_id, SDTTConfig(), 0.25, gen, noise)
        else:
            cfg = MMDConfig(feature_block=0)
            loss, _ = mmd_step(fn, feats, x0, maskable, teacher.schedule, tok.mask_id, cfg,
                               resolve_alpha(None, feats, x0, maskable), gen, noise, teacher=teacher.denoiser(teacher.model, False))
        loss.backward()
        assert torch.isfinite(loss) and grads_stay_finite_and_reach(student)
