"""``--lengths N`` in a fixed-length domain (text; LLaDA/Dream load there): N generated positions.

With a prompt the row is [BOS] prompt + N masks and nothing after (LLaDA's ``gen_length``, ML-GSAI/LLaDA
``generate.py``); without, a row of N. Checked against the start states they must come from (lengths,
prompt kept, no mask left) for every sampler on the shared loop, with and without blocks; the default
(no --lengths) is pinned to the tokens the sampler wrote before --lengths applied to text."""

import json
from dataclasses import replace

import pytest
import torch
from test_dllm_teachers import make_llada
from test_prompt import ScoresToken
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.registry.plugins import get_domain, samplers
from didi_seq.sampling.ancestral import SamplerConfig, sample_batches
from didi_seq.sampling.generate import generate, load_model, sampler_config
from didi_seq_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return load_model(get_domain("text"), str(tiny_ckpt))


def default_runs(model, plain_lengths: str | None = None, prompt_lengths: str | None = None) -> dict:
    plain = generate(model, sampler_config("ancestral", "text", nfe=4), num_samples=2, seed=0, lengths=plain_lengths)
    blocks = generate(model, sampler_config("dilated", "text", nfe=6, block_length=4), sampler="dilated",
                      num_samples=2, seed=3, prompt="Hello world", lengths=prompt_lengths)
    return {"plain": plain.result.tokens.tolist(), "prompt_blocks": blocks.result.tokens.tolist()}


def test_default_without_lengths_is_unchanged(model):
    """No --lengths gives what the core loop gives on all-mask rows, and what --lengths of the default size gives.

    (Until 2026-12-05 this pinned literal tokens; those depend on the CPU's float kernels — an AVX-512 machine drew
    others — so the default is now checked against the paths it must agree with on any machine.)"""
    default = default_runs(model)
    direct = sample_batches(model.adapter, 2, SamplerConfig(nfe=4), seed=0).tokens.tolist()
    assert default["plain"] == direct
    answer = model.adapter.spec.max_length - 1 - len(model.tokenizer.encode_batch(["Hello world"])[0])  # after BOS+prompt
    assert default == default_runs(model, plain_lengths=str(model.adapter.spec.max_length), prompt_lengths=str(answer))


# -- N generated positions: after the prompt, or the whole row ----------------------------------------

def run(model, sampler: str, n: int | None, prompt=None, **options):
    """generate() with ``sampler`` (rgas: with a stand-in discriminator) and ``--lengths n``."""
    chosen = replace(samplers()["rgas"], disc=ScoresToken()) if sampler == "rgas" else sampler
    cfg = sampler_config(sampler, "text", nfe=options.pop("nfe", 6), **options)
    return generate(model, cfg, sampler=chosen, num_samples=3, seed=1, prompt=prompt,
                    lengths=None if n is None else str(n))


@pytest.mark.parametrize("sampler, options", [("ancestral", {}), ("dilated", {}), ("rgas", {}),
                                              ("ancestral", {"block_length": 2}), ("dilated", {"block_length": 3}),
                                              ("rgas", {"block_length": 2})])
def test_prompted_rows_are_bos_prompt_and_exactly_n_generated_positions(model, sampler, options):
    ids = model.tokenizer.encode_batch(["Hello world"])[0]
    n = 5
    out = run(model, sampler, n, prompt="Hello world", **options)
    mask = model.adapter.spec.mask_id
    for rec in out.records:
        assert len(rec["tokens"]) == 1 + len(ids) + n  # the prompt's layout, N answer positions, nothing after
        assert rec["tokens"][:1 + len(ids)] == [model.tokenizer.bos_id, *ids] and mask not in rec["tokens"]
        assert rec["length_model"] == {"kind": "fixed", "length": n}
    if options:  # blocks cover the answer only: ⌈5 / B⌉ of them
        blocks = {k: out.records[0][sampler][k] for k in ("block_length", "blocks")}
        assert blocks == {"block_length": options["block_length"], "blocks": -(-n // options["block_length"])}


@pytest.mark.parametrize("sampler", ["ancestral", "dilated", "rgas"])
def test_unprompted_rows_have_length_n(model, sampler):
    out = run(model, sampler, 7)
    assert out.result.tokens.shape == (3, 7) and not (out.result.tokens == model.adapter.spec.mask_id).any()


def test_n_filling_the_model_row_equals_the_default(model):
    """``--lengths`` = what the default leaves to generate: the very same samples (same start states, same stream)."""
    ids = model.tokenizer.encode_batch(["Hello world"])[0]
    free = model.adapter.spec.max_length - 1 - len(ids)
    a = run(model, "ancestral", free, prompt="Hello world").result.tokens
    b = run(model, "ancestral", None, prompt="Hello world").result.tokens
    assert torch.equal(a, b)


def test_python_api_takes_lengths_as_an_int_or_a_string(tiny_ckpt):
    from didi_seq import MaskedDiffusionModel

    m = MaskedDiffusionModel.from_pretrained(str(tiny_ckpt), domain="text")
    ids = m.tokenizer.encode_batch(["The"])[0]
    as_int = m.sample(nfe=4, num_samples=2, prompt="The", lengths=4, block_length=2)
    as_str = m.sample(nfe=4, num_samples=2, prompt="The", lengths="4", block_length=2)
    assert [r["tokens"] for r in as_int] == [r["tokens"] for r in as_str]
    assert all(len(r["tokens"]) == 1 + len(ids) + 4 for r in as_int)
    assert [len(r["tokens"]) for r in m.sample(nfe=4, num_samples=2, lengths=9)] == [9, 9]
    with pytest.raises(TypeError, match="lengths must be"):
        m.sample(nfe=4, lengths=4.0)
    with pytest.raises(DidiError, match="pass lengths only"):
        m.sample(nfe=4, lengths=4, length=8)


def test_a_llada_teacher_generates_gen_length_positions_after_the_prompt(tmp_path):
    directory, *_ = make_llada(tmp_path / "LLaDA-tiny")
    llada = load_model(get_domain("text"), str(directory))
    prompt = [5, 6, 7]
    out = generate(llada, sampler_config("ancestral", "text", nfe=4, block_length=2), num_samples=2, prompt=prompt,
                   lengths="4")
    for rec in out.records:
        assert rec["tokens"][:4] == [llada.tokenizer.bos_id, *prompt] and len(rec["tokens"]) == 8
        assert llada.adapter.spec.mask_id not in rec["tokens"]


# -- bad lengths: one error line, before sampling -----------------------------------------------------

def sample_cli(*args):
    return runner.invoke(app, ["sample", "--domain", "text", *map(str, args)])


@pytest.mark.parametrize("args, message", [
    (["--lengths", "5,6"], "only one length applies there"),
    (["--lengths", "x"], "it takes one integer"),
    (["--lengths", 0], "must be at least 1"),
    (["--lengths", -3], "must be at least 1"),
    (["--lengths", 17], "a row of 17 positions is longer than the model's 16"),
    (["--lengths", 14, "--prompt", "Hello"], "+ the prompt's 2 tokens + 14 = 17 positions is longer than the model's 16"),
])
def test_cli_bad_lengths_are_one_error_line(tiny_ckpt, tmp_path, args, message):
    out = tmp_path / "s.jsonl"
    one_error_line(sample_cli("--checkpoint", tiny_ckpt, "--nfe", 4, "--output", out, *args), message)
    assert not out.exists()


def test_prompts_of_different_token_counts_cannot_share_n(model):
    with pytest.raises(DidiError, match="prompts of 1 to 2 tokens"):
        run(model, "ancestral", 3, prompt=[[5], [6, 7]])
    assert len(run(model, "ancestral", 3, prompt=[[5, 6], [6, 7]]).records) == 6  # same count: fine


def test_cli_lengths_with_a_prompt_writes_prompt_plus_n(tiny_ckpt, tmp_path):
    out = tmp_path / "s.jsonl"
    r = sample_cli("--checkpoint", tiny_ckpt, "--nfe", 4, "--num-samples", 2, "--prompt", "Hello world",
                   "--lengths", 6, "--sampler", "dilated", "--block-length", 3, "--output", out)
    assert r.exit_code == 0, r.output
    ids = get_domain("text").load_tokenizer(None).encode_batch(["Hello world"])[0]
    for rec in map(json.loads, out.read_text().splitlines()):
        assert len(rec["tokens"]) == 1 + len(ids) + 6 and rec["tokens"][1:1 + len(ids)] == ids
        assert rec["dilated"] == {"block_length": 3, "blocks": 2}
