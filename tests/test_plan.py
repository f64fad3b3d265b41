"""``didi-seq plan``: parameter counts against built networks, byte arithmetic against hand calculations,
the fit decision at its threshold, and bad input as one error line."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import DidiError
from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.training.plan import GIB, Setup, gpu_hours, plan, read_shape
from didi_seq_cli.main import app

runner = CliRunner()


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def native_config(**model) -> dict:
    cfg = {"vocab_size": 50, "length": 8, "hidden": 16, "layers": 3, "heads": 2, "cond_dim": 8, **model}
    return {"format": "didi-seq", "kind": "teacher", "model": cfg, "spec": {"max_length": 8}}


def test_the_count_of_a_didi_seq_config_is_the_built_dits():
    config = native_config()
    shape, model = read_shape(config), DiT(DiTConfig(**config["model"]))
    assert shape.params == numel(model)
    assert (shape.block, shape.head, shape.embedding) == (numel(model.blocks[0]), numel(model.output_layer), 50 * 16)
    assert (shape.layers, shape.hidden, shape.mlp, shape.gated, shape.max_length) == (3, 16, 64, False, 8)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_count_of_a_hugging_face_config_is_the_built_models(kind):
    transformers = pytest.importorskip("transformers")
    keys = {"hidden_size": 32, "intermediate_size": 72, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 97, "tie_word_embeddings": False, "max_position_embeddings": 64}
    cls, model_cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
                      "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}[kind]
    config = cls(**keys)
    model = model_cls(config)
    shape = read_shape(json.loads(config.to_json_string()))
    assert shape.params == numel(model)  # qwen2: q/k/v biases, llama: none
    assert shape.block == numel(model.model.layers[0])
    assert shape.head == numel(model.lm_head) + numel(model.model.norm)


def test_the_count_of_llada_8b_is_the_hand_calculation():
    config = {"d_model": 4096, "n_heads": 32, "n_kv_heads": 32, "n_layers": 32, "mlp_hidden_size": 12288,
              "vocab_size": 126464, "embedding_size": 126464, "weight_tying": False, "include_bias": False,
              "block_type": "llama", "max_sequence_length": 4096}
    layer = 4 * 4096 * 4096 + 3 * 4096 * 12288 + 2 * 4096  # q, k, v, out; ff_proj, up_proj, ff_out; two RMSNorm weights
    assert layer == 218_112_000
    shape = read_shape(config)
    assert shape.params == 32 * layer + 2 * 126464 * 4096 + 4096 == 8_015_581_184  # the model card's "8B"
    assert shape.block == layer and shape.max_length == 4096


def test_sdtt_bytes_on_two_sharded_gpus_are_the_hand_calculation():
    shape = read_shape(native_config())
    p = shape.params  # 2 B weights, and trained: 2 + 4 (master) + 2 (grads) + 8 (Adam) + 4 (EMA), all / 2 GPUs
    rows = {r.what: r.bytes for r in plan(shape, Setup("sdtt", gpus=2, gpu_mem_gib=1, rows=4, length=8, shard="fsdp",
                                                          dtype="bf16")).rows}
    assert rows["teacher weights (frozen)"] == p and rows["round teacher (the EMA student of the last round) weights (frozen)"] == p
    assert [rows[f"student {k}"] for k in ("weights", "fp32 master weights", "gradients", "Adam moments", "EMA (fp32)")] \
        == [p, 2 * p, p, 4 * p, 2 * p]
    # 2 rows per GPU × 8 tokens × (18·16 + 4·64) bytes per layer × 3 layers, + 12 B × 2 × 8 × 50 logits
    assert rows["student activations"] == 2 * 8 * (18 * 16 + 4 * 64) * 3 + 12 * 2 * 8 * 50
    root = p - 3 * shape.block
    assert rows["FSDP gathered units (root + one block, with gradients)"] == (root + shape.block) * 2 * 2
    ddp = {r.what: r.bytes for r in plan(shape, Setup("sdtt", 2, 1, 4, 8, "ddp", "fp32")).rows}
    assert ddp["student weights"] == 4 * p and "student fp32 master weights" not in ddp  # whole, fp32: no master
    assert ddp["student activations"] == 2 * (2 * 8 * (18 * 16 + 4 * 64) * 3) + 12 * 2 * 8 * 50  # fp32: twice


def test_the_fit_decision_turns_at_the_usable_memory():
    shape = read_shape(native_config())
    need = plan(shape, Setup("didi-instruct", 2, 1.0, 4, 8, "fsdp")).per_rank
    at = (need / GIB + 1.0) / 0.9  # usable = 0.9 × G − 1 GiB
    assert plan(shape, Setup("didi-instruct", 2, at * 1.0001, 4, 8, "fsdp")).fits
    assert not plan(shape, Setup("didi-instruct", 2, at * 0.9999, 4, 8, "fsdp")).fits


def test_gpu_hours_are_flops_over_the_assumed_rate():
    assert gpu_hours(3.6e15, 1000, 1000.0) == pytest.approx(1.0)  # 3.6 PFLOP × 1000 steps at 1 PFLOP/s = 1 h


def test_the_cli_prints_a_table_and_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(native_config()))
    args = ["plan", "--teacher", str(tmp_path), "--method", "sdtt", "--gpus", "2", "--gpu-mem", "80", "--shard", "fsdp"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "fits:" in r.stdout and "student Adam moments" in r.stdout, r.output
    record = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert record["fits"] and record["per_rank"] == sum(row["bytes"] for row in record["rows"])
    assert record["rows_per_step"] == 8 and record["length"] == 8  # SDTT's default batch, the config's length


@pytest.mark.parametrize("extra, fragment", [
    (["--gpus", "0"], "--gpus must be a positive integer"),
    (["--gpus", "3"], "--batch-size 16 does not split over 3 GPUs"),
    (["--gpus", "2", "--gpu-mem", "nan"], "--gpu-mem must be a positive number"),
    (["--gpus", "2", "--method", "rlhf"], "plan knows the memory of --method didi-instruct, sdtt, mmd"),
    (["--gpus", "2", "--dtype", "fp8"], "unknown --dtype 'fp8'"),
    (["--gpus", "2", "--shard", "zero3"], "unknown --shard 'zero3'"),
])
def test_bad_options_are_one_error_line(tmp_path, extra, fragment):
    (tmp_path / "config.json").write_text(json.dumps(native_config()))
    one_error_line(runner.invoke(app, ["plan", "--teacher", str(tmp_path), "--gpu-mem", "80", *extra]), fragment)


@pytest.mark.parametrize("config, fragment", [
    ({"hidden_size": 32, "num_hidden_layers": 2}, "'num_attention_heads' must be a positive integer, got None"),
    ({"d_model": 32, "n_layers": -1}, "'n_layers' must be a positive integer, got -1"),
    ({"architectures": ["Mystery"]}, "not a config plan reads"),
    ([1, 2], "is not a JSON object"),
])
def test_bad_configs_are_one_error_line(tmp_path, config, fragment):
    (tmp_path / "config.json").write_text(json.dumps(config))
    one_error_line(runner.invoke(app, ["plan", "--teacher", str(tmp_path / "config.json"), "--gpus", "1",
                                       "--gpu-mem", "80", "--length", "8"]), fragment)
    with pytest.raises(DidiError):
        read_shape(config)


def test_a_missing_teacher_is_one_error_line(tmp_path):
    one_error_line(runner.invoke(app, ["plan", "--teacher", str(tmp_path / "none"), "--gpus", "1", "--gpu-mem", "80"]),
                   "no such file or directory; plan reads a local config.json")


def test_plan_reads_no_weights(tmp_path, monkeypatch):
    """Only config.json: a checkpoint directory whose weights file is garbage plans all the same."""
    (tmp_path / "config.json").write_text(json.dumps(native_config()))
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("plan loaded a tensor file"))
    assert runner.invoke(app, ["plan", "--teacher", str(tmp_path), "--gpus", "1", "--gpu-mem", "80"]).exit_code == 0
