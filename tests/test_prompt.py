"""Prompt-conditioned sampling and semi-autoregressive blocks (LLaDA, arXiv 2502.09992 §2.4).

Each against an independent check: every registered sampler's every network input still holds the
prompt (a sampler that re-masked or overwrote it fails), the block sampler with one position per step
reproduces the exact conditional p(answer | prompt) of an enumerable joint, blocks are revealed left to
right, the exact cache stays exact across blocks, and bad prompts are one error line."""

import itertools
import json
from dataclasses import replace

import pytest
import torch
from test_sampler import CRIT_P001, chi_square
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.models.process import LogLinearSchedule, framed_prior
from didi_seq.models.teacher import TeacherAdapter, TeacherSpec
from didi_seq.registry.plugins import get_domain, samplers
from didi_seq.sampling.ancestral import SamplerConfig
from didi_seq.sampling.blocks import answer_blocks, block_count
from didi_seq.sampling.contract import BadDistribution, SampleResult, SamplerOptions
from didi_seq.sampling.prompt import encode_prompts, prompted_states, read_prompt
from didi_seq_cli.main import app

runner = CliRunner()


class ExactJoint(TeacherAdapter):
    """p(x_i | unmasked positions) of a fixed joint over V^L, exactly (a perfect time-agnostic denoiser);
    records every network input."""

    def __init__(self, joint: torch.Tensor, V: int, L: int):
        self.V, self.L = V, L
        self.spec = TeacherSpec(vocab_size=V + 1, mask_id=V, max_length=L)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.states = torch.tensor(list(itertools.product(range(V), repeat=L)))  # [S, L]
        self.onehot = torch.nn.functional.one_hot(self.states, V).double()  # [S, L, V]
        self.joint, self.seen = joint, []

    def logits(self, x_t, t=None):
        self.seen.append(x_t.clone())
        known = x_t != self.spec.mask_id
        ok = ((self.states[None] == x_t[:, None]) | ~known[:, None]).all(-1)  # [B, S]: states agreeing with x_t
        p = torch.einsum("bs,slv->blv", self.joint * ok, self.onehot)
        out = torch.full((*x_t.shape, self.V + 1), -1e9)
        out[..., :self.V] = (p / p.sum(-1, keepdim=True)).clamp_min(1e-30).log().float()
        return out

    def student_copy(self):
        raise NotImplementedError


def skewed_joint(V: int, L: int, seed: int = 0) -> torch.Tensor:
    w = torch.rand(V ** L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) ** 4 + 0.01
    return w / w.sum()


def state_index(x: torch.Tensor, V: int) -> torch.Tensor:
    return (x * torch.tensor([V ** (x.shape[1] - 1 - i) for i in range(x.shape[1])])).sum(-1)


# -- the exact toy: blocks, one position per step, reproduce p(answer | prompt) --------------------

V, L, PROMPT = 2, 5, 1  # position 0 holds the prompt token 1; four answer positions, 16 outcomes
CRIT_DF15 = CRIT_P001[15]


def conditional_counts(sampler: str, nfe: int, block_length: int | None, rows: int = 4000):
    joint = skewed_joint(V, L)
    teacher = ExactJoint(joint, V, L)
    start = torch.full((rows, L), teacher.spec.mask_id)
    start[:, 0] = PROMPT
    cfg = SamplerConfig(nfe=nfe, block_length=block_length)
    out = samplers()[sampler].sample(teacher, start, cfg, torch.Generator().manual_seed(5)).tokens
    assert (out[:, 0] == PROMPT).all()  # the prompt is never changed
    counts = torch.bincount(state_index(out[:, 1:], V), minlength=V ** (L - 1)).double()
    given = joint.view(V, -1)[PROMPT]
    return counts, given / given.sum(), joint.view(V, -1).sum(0), teacher


@pytest.mark.parametrize("sampler, nfe, block_length", [
    ("dilated", 4, 2),  # 2 blocks × 2 steps, one position each
    ("ancestral", 4, 1),  # blocks of one position: left-to-right autoregressive
    ("dilated", 6, 3),  # blocks of 3 and 1 positions, 3 steps each: a short last block
])
def test_blocks_one_position_per_step_reproduce_the_conditional(sampler, nfe, block_length):
    counts, conditional, unconditional, _ = conditional_counts(sampler, nfe, block_length)
    assert chi_square(counts, conditional) < CRIT_DF15
    # the test can tell the conditional from what a sampler that ignored the prompt would give
    assert chi_square(counts, unconditional) > CRIT_DF15


def test_one_block_in_one_step_draws_positions_independently_and_fails():
    """Negative control: every answer position revealed at once from its own marginal is not the joint."""
    counts, conditional, _, _ = conditional_counts("dilated", 1, 4)
    assert chi_square(counts, conditional) > CRIT_DF15


def test_blocks_are_revealed_left_to_right_with_their_share_of_steps():
    """Every network input: no position of block j+1 is revealed while block j has a mask; and with 2 steps per
    block of 2, the first block is complete after exactly 2 network steps (the dilated order: one per step)."""
    _, _, _, teacher = conditional_counts("dilated", 4, 2, rows=50)
    for x in teacher.seen:
        revealed = x[:, 1:] != teacher.spec.mask_id  # blocks {1, 2}, {3, 4}
        first, second = revealed[:, :2], revealed[:, 2:]
        assert (~second.any(-1) | first.all(-1)).all()
    revealed_counts = [int((x[0, 1:] != teacher.spec.mask_id).sum()) for x in teacher.seen]
    assert revealed_counts == [0, 1, 2, 3]


def test_greedy_final_takes_the_arg_max_at_the_end_of_every_block():
    """One step per block reveals the whole block at its last step: with --final greedy every answer token is the
    arg-max (token 0 at 0.4); a block that ran the whole call's settings would draw them instead."""
    from test_sampler import FixedTeacher

    teacher = FixedTeacher([0.4, 0.35, 0.25], length=9)
    start = torch.full((200, 9), teacher.spec.mask_id)
    start[:, 0] = 2
    out = samplers()["ancestral"].sample(teacher, start, SamplerConfig(nfe=4, block_length=2, final="greedy"),
                                         torch.Generator().manual_seed(0)).tokens
    assert (out[:, 0] == 2).all() and (out[:, 1:] == 0).all()


def test_answer_blocks_start_after_each_rows_prompt():
    masked = torch.tensor([[False, True, True, True, True, True], [False, False, False, True, True, True]])
    assert answer_blocks(masked, 2).tolist() == [[-1, 0, 0, 1, 1, 2], [-1, -1, -1, 0, 0, 1]]
    assert answer_blocks(masked, None).tolist() == [[-1, 0, 0, 0, 0, 0], [-1, -1, -1, 0, 0, 0]]
    assert block_count(masked, 2) == 3 and block_count(masked, 5) == 1 and block_count(masked, None) == 1


# -- every registered sampler keeps the prompt, at every step -----------------------------------------

class Recorder(TeacherAdapter):
    """Logits that depend on the whole input (so the prompt matters), over the 33-token protein alphabet;
    records every network input."""

    def __init__(self, length: int):
        self.spec = TeacherSpec(vocab_size=33, mask_id=32, max_length=length, never_mask=[0, 2], pad_id=1)
        self.schedule = LogLinearSchedule()
        self.provenance = {}
        self.table = torch.randn(33, 33, generator=torch.Generator().manual_seed(0))
        self.seen = []

    def logits(self, x_t, t=None):
        self.seen.append(x_t.clone())
        context = self.table[x_t].mean(1, keepdim=True)  # [B, 1, V]
        return (self.table[x_t] + context).float()

    def student_copy(self):
        raise NotImplementedError


class ScoresToken(torch.nn.Module):
    """A stand-in discriminator for RGAS: soft tokens (tilting) or ids (re-ranking) → per-position scores."""

    def forward(self, x, t):
        return x[..., 5] if x.is_floating_point() else (x == 5).float()


def framed_prompted(rows: int, answer: int, prompt: list[int]) -> torch.Tensor:
    x = framed_prior([answer + len(prompt)] * rows, 32, 0, 2, 1, width=answer + len(prompt) + 4)
    return prompted_states(x, [prompt] * rows, 0, 32)


PROTEIN_PROMPT = [20, 15, 11]  # M K T


def run_registered(name: str, x_init: torch.Tensor, **options):
    sampler = samplers()[name]
    if name == "rgas":
        sampler = replace(sampler, disc=ScoresToken())
        options = {"guidance_start": 1.0, "guidance_end": 1.0, "candidates": 2, **options}
    teacher = Recorder(x_init.shape[1])
    cfg = sampler.config(nfe=6, **options)
    return sampler.sample(teacher, x_init, cfg, torch.Generator().manual_seed(1)), teacher


@pytest.mark.parametrize("name, options", [("ancestral", {}), ("dilated", {}), ("rgas", {}), ("native", {}),
                                           ("ancestral", {"block_length": 3}), ("dilated", {"block_length": 2}),
                                           ("rgas", {"block_length": 4})])
def test_every_registered_sampler_keeps_the_prompt_at_every_step(name, options):
    x_init = framed_prompted(4, 6, PROTEIN_PROMPT)
    fixed = x_init != 32
    result, teacher = run_registered(name, x_init, **options)
    assert teacher.seen, "the sampler never called the network"
    for x in teacher.seen:  # never masked, never changed on the way (the network always sees the prompt)
        assert (x[:, fixed[0]] == x_init[0, fixed[0]]).all()  # every row has the same frame and prompt
    assert torch.equal(result.tokens[fixed], x_init[fixed]) and not (result.tokens == 32).any()
    assert (result.tokens[:, 1:4] == torch.tensor(PROTEIN_PROMPT)).all()


def test_the_registry_has_no_sampler_this_test_forgets():
    assert set(samplers()) == {"ancestral", "dilated", "rgas", "native"}


class Overwriter:
    """A broken plugin sampler: fills the masks, then writes token 5 over position 1 (a prompt token)."""

    name, description, config, domains = "overwriter", "test: overwrites position 1", SamplerOptions, None

    def sample(self, adapter, x_init, cfg, generator, on_step=None):
        x = torch.where(x_init == adapter.spec.mask_id, 5, x_init)
        x[:, 1] = 5
        return SampleResult(x, 1, len(x), cfg.nfe, 0.0)


def test_generate_refuses_samples_that_changed_the_prompt(tiny_ckpt):
    from didi_seq.sampling.generate import generate, load_model

    model = load_model(get_domain("text"), str(tiny_ckpt))
    with pytest.raises(BadDistribution, match="changed 2 fixed positions"):
        generate(model, SamplerOptions(nfe=2), sampler=Overwriter(), num_samples=2, prompt="Hello world")
    generate(model, SamplerOptions(nfe=2), sampler=Overwriter(), num_samples=2)  # position 1 is not fixed there


# -- the cache stays exact across blocks and prompts ---------------------------------------------------

@pytest.mark.parametrize("name", ["ancestral", "dilated"])
def test_cache_is_exact_with_blocks_and_a_prompt(tiny_ckpt, name):
    from didi_seq.models.loading import load_teacher

    teacher = load_teacher(str(tiny_ckpt), get_domain("text"))[0]
    start = torch.full((6, teacher.spec.max_length), teacher.spec.mask_id)
    start = prompted_states(start, [[7, 8, 9]] * 6, 0, teacher.spec.mask_id)
    runs = [samplers()[name].sample(teacher, start, SamplerConfig(nfe=24, block_length=4, cache=c),
                                    torch.Generator().manual_seed(4)) for c in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert (runs[0].tokens[:, :4] == torch.tensor([0, 7, 8, 9])).all()
    assert runs[0].rows_evaluated < runs[1].rows_evaluated  # the cache still saves work


# -- prompts in, samples out --------------------------------------------------------------------------

def test_prompted_states_write_bos_then_the_prompt():
    x = torch.full((2, 6), 9)
    out = prompted_states(x, [[3, 4], [5]], bos_id=1, mask_id=9)
    assert out.tolist() == [[1, 3, 4, 9, 9, 9], [1, 5, 9, 9, 9, 9]]
    framed = framed_prior([4], 9, 0, 2, 7, width=7)  # [BOS] m m m m [EOS] pad
    assert prompted_states(framed, [[3, 4, 5]], 0, 9).tolist() == [[0, 3, 4, 5, 9, 2, 7]]
    assert prompted_states(torch.full((1, 6), 9), [[3] * 4], 1, 9).tolist() == [[1, 3, 3, 3, 3, 9]]  # one left
    with pytest.raises(DidiError, match="the prompt has 5 tokens: longer than"):
        prompted_states(torch.full((1, 6), 9), [[3] * 5], 1, 9)
    with pytest.raises(DidiError, match="longer than"):
        prompted_states(framed, [[3, 4, 5, 6]], 0, 9)


def test_encode_prompts_checks_every_prompt():
    tok = get_domain("text").load_tokenizer(None)
    spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=16)
    assert encode_prompts("Hello world", tok, spec) == tok.encode_batch(["Hello world"])
    assert encode_prompts(["a", "b c"], tok, spec) == tok.encode_batch(["a", "b c"])
    assert encode_prompts([5, 6], tok, spec) == [[5, 6]] and encode_prompts([[5], [6, 7]], tok, spec) == [[5], [6, 7]]
    assert encode_prompts("<mask>", tok, spec)[0] != [tok.mask_id]  # literal text, never the mask id
    for bad, message in [("", "the prompt is empty"), (["a", ""], "prompt 2 of 2 is empty"),
                         ([[5], []], "prompt 2 of 2 is empty"), ([5, tok.mask_id], "holds the mask token"),
                         ([tok.vocab_size], "outside the vocabulary"), ([-1], "outside the vocabulary")]:
        with pytest.raises(DidiError, match=message):
            encode_prompts(bad, tok, spec)
    for bad in (5, [], [True, False], ["a", 5], None):
        with pytest.raises(TypeError, match="prompt must be"):
            encode_prompts(bad, tok, spec)


def test_read_prompt_takes_a_files_content_or_the_text(tmp_path):
    (tmp_path / "p.txt").write_text("Once upon\na time\n")
    assert read_prompt(str(tmp_path / "p.txt")) == "Once upon\na time"
    assert read_prompt(str(tmp_path / "missing.txt")) == str(tmp_path / "missing.txt")
    assert read_prompt("x" * 5000) == "x" * 5000  # no file name can be that long
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DidiError, match="--prompt file is empty"):
        read_prompt(str(tmp_path / "empty.txt"))


def test_python_api_prompt_forms(tiny_ckpt):
    from didi_seq import MaskedDiffusionModel

    model = MaskedDiffusionModel.from_pretrained(str(tiny_ckpt), domain="text")
    tok = model.tokenizer
    ids = tok.encode_batch(["Hello world"])[0]
    recs = model.sample(nfe=4, num_samples=2, prompt=["Hello world", "The"], block_length=4)
    assert [r["prompt"]["index"] for r in recs] == [0, 0, 1, 1] and len(recs) == 4
    assert all(r["tokens"][:len(ids) + 1] == [tok.bos_id, *ids] for r in recs[:2])
    assert recs[0]["decoded"].startswith("Hello world") and recs[0]["prompt"]["text"] == "Hello world"
    assert recs[0]["ancestral"] == {"block_length": 4, "blocks": 4}  # 16 − BOS − 1 = 14 answer positions → 4 blocks
    as_text = model.sample(nfe=6, num_samples=2, prompt="Hello world", block_length=4)  # 11 answer positions: 3 blocks
    as_ids = model.sample(nfe=6, num_samples=2, prompt=ids, block_length=4)  # token ids: the same samples
    assert [r["tokens"] for r in as_ids] == [r["tokens"] for r in as_text] and as_text[0]["ancestral"]["blocks"] == 3
    with pytest.raises(TypeError, match="prompt must be"):
        model.sample(nfe=4, prompt=5)
    with pytest.raises(DidiError, match="holds the mask token"):
        model.sample(nfe=4, prompt=[tok.mask_id])
    with pytest.raises(DidiError, match="does not split evenly over the 4 blocks"):
        model.sample(nfe=6, prompt="The", block_length=4)  # 14 answer positions


def sample_cli(*args):
    return runner.invoke(app, ["sample", "--domain", "text", *map(str, args)])


def test_cli_prompt_from_text_or_file_leads_every_sample(tiny_ckpt, tmp_path):
    (tmp_path / "prompt.txt").write_text("Hello world\n")
    outs = []
    for prompt in ("Hello world", tmp_path / "prompt.txt"):
        out = tmp_path / f"s{len(outs)}.jsonl"
        r = sample_cli("--checkpoint", tiny_ckpt, "--nfe", 4, "--num-samples", 3, "--prompt", prompt,
                       "--sampler", "dilated", "--block-length", 6, "--output", out)
        assert r.exit_code == 0, r.output
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
    assert outs[0] == [{**rec, "run": outs[0][i]["run"]} for i, rec in enumerate(outs[1])]  # same samples
    ids = get_domain("text").load_tokenizer(None).encode_batch(["Hello world"])[0]
    for rec in outs[0]:
        assert rec["tokens"][1:1 + len(ids)] == ids and rec["decoded"].startswith("Hello world")
        assert rec["prompt"]["num_tokens"] == len(ids) and rec["dilated"] == {"block_length": 6, "blocks": 2}


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "word " * 40], "longer than the 14 a row of 16 positions holds"),
    (["--prompt", "The", "--block-length", 4, "--nfe", 3], "--nfe 3 does not split evenly over the 4 blocks"),
    (["--block-length", 0], "--block-length must be a positive integer"),
])
def test_cli_bad_prompts_and_blocks_are_one_error_line(tiny_ckpt, args, message):
    base = ["--checkpoint", tiny_ckpt, "--nfe", 4]
    one_error_line(sample_cli(*base, *args), message)


def test_block_length_belongs_to_the_samplers_on_the_shared_loop():
    r = runner.invoke(app, ["sample", "--domain", "protein", "--nfe", "4", "--sampler", "native", "--block-length", "2"])
    one_error_line(r, "--block-length is an option of --sampler ancestral / dilated / rgas, not of --sampler native")


# -- a variable-length domain: the prompt follows <cls>, the drawn length is the answer's -----------------

@pytest.fixture(scope="module")
def dplm_tiny(tmp_path_factory):
    from protein_models import save_tiny_dplm

    return save_tiny_dplm(tmp_path_factory.mktemp("dplm") / "dplm_tiny")


@pytest.mark.parametrize("sampler", ["native", "ancestral"])
def test_protein_prompt_leads_each_sequence_of_prompt_plus_answer_length(dplm_tiny, sampler):
    from didi_seq.sampling.generate import generate, load_model, sampler_config

    model = load_model(get_domain("protein"), str(dplm_tiny))
    out = generate(model, sampler_config(sampler, "protein", nfe=4), sampler=sampler, num_samples=4, lengths="5,9",
                   prompt=["MKT", "AC"])
    assert [r["sequence"][:3] for r in out.records[:4]] == ["MKT"] * 4 and all(
        r["sequence"].startswith("AC") for r in out.records[4:])
    assert [r["length"] for r in out.records] == [8, 8, 8, 8, 11, 11, 11, 11]  # the list splits over all 8 rows
    tok = model.tokenizer
    for rec in out.records:
        ids = rec["tokens"]
        assert ids[0] == tok.bos_id and ids[rec["length"] + 1] == tok.eos_id and tok.mask_id not in ids


def test_protein_prompt_too_long_for_the_model_is_refused(dplm_tiny):
    from didi_seq.sampling.generate import generate, load_model, sampler_config

    model = load_model(get_domain("protein"), str(dplm_tiny))
    too_long = "A" * (model.adapter.spec.max_length - 2)
    with pytest.raises(DidiError, match=f"the prompt has {len(too_long)} tokens: longer than"):
        generate(model, sampler_config("native", "protein", nfe=4), sampler="native", num_samples=1, prompt=too_long)
