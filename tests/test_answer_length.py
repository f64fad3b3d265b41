"""``--lengths N`` in a fixed-length domain (text; LLaDA/Dream load there): N generated positions.

With a prompt the row is [BOS] prompt + N masks and nothing after (LLaDA's ``gen_length``, ML-GSAI/LLaDA
``generate.py``); without, a row of N. Checked against the start states they must come from (lengths,
prompt kept, no mask left) for every sampler on the shared loop, with and without blocks; the default
(no --lengths) is pinned to the tokens the sampler wrote before --lengths applied to text."""

import json
from dataclasses import replace

import pytest
import torch
from test_prompt import ScoresToken
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.registry.plugins import get_domain, samplers
from didi_seq.sampling.generate import generate, load_model, sampler_config
from didi_seq_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return load_model(get_domain("text"), str(tiny_ckpt))


# Written by generate() before this change (tiny_ckpt, seed 0): the default must stay bit-identical.
PINNED = {
    "plain": [[1717, 3027, 1669, 2228, 446, 2605, 1159, 2271, 2605, 2568, 208, 678, 30, 1297, 2019, 2154],
              [1693, 1989, 3105, 609, 3628, 1266, 2605, 482, 1977, 1297, 1977, 2271, 3551, 2985, 2709, 2360]],
    "prompt_blocks": [[0, 41, 2390, 299, 2992, 3028, 591, 473, 1669, 1744, 318, 1297, 2271, 1779, 208, 208],
                      [0, 41, 2390, 299, 2992, 2878, 1528, 2568, 3083, 3685, 3984, 328, 208, 1834, 2271, 985]],
}


def default_runs(model) -> dict:
    plain = generate(model, sampler_config("ancestral", "text", nfe=4), num_samples=2, seed=0)
    blocks = generate(model, sampler_config("dilated", "text", nfe=6, block_length=4), sampler="dilated",
                      num_samples=2, seed=3, prompt="Hello world")
    return {"plain": plain.result.tokens.tolist(), "prompt_blocks": blocks.result.tokens.tolist()}


def test_default_without_lengths_is_unchanged(model):
    assert default_runs(model) == PINNED
