import pytest
import torch

from conftest import build_tiny_checkpoint
from didi_seq.errors import CheckpointError
from didi_seq.io.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain


def test_round_trip_is_exact(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    model = DiT(DiTConfig.from_dict(ckpt.config["model"]))
    load_state_strict(model, ckpt.state, "test")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt.state[k])
    again = load_checkpoint(tiny_ckpt)
    assert again.id == ckpt.id and again.id.startswith("tiny-test@")


def _resave(src, dst, state):
    ckpt = load_checkpoint(src)
    save_checkpoint(dst, state, {k: v for k, v in ckpt.config.items() if k not in ("format", "format_version")})


def test_missing_key_is_reported(tiny_ckpt, tmp_path):
    state = dict(load_checkpoint(tiny_ckpt).state)
    state.pop("blocks.0.attn_qkv.weight")
    _resave(tiny_ckpt, tmp_path / "m", state)
    with pytest.raises(CheckpointError, match=r"1 missing keys: blocks\.0\.attn_qkv\.weight"):
        load_teacher(str(tmp_path / "m"), get_domain("text"))


def test_unexpected_and_wrong_shape_are_reported(tiny_ckpt, tmp_path):
    state = dict(load_checkpoint(tiny_ckpt).state)
    state["extra.weight"] = torch.zeros(1)
    state["blocks.0.norm1.weight"] = torch.ones(7)
    _resave(tiny_ckpt, tmp_path / "u", state)
    with pytest.raises(CheckpointError) as e:
        load_teacher(str(tmp_path / "u"), get_domain("text"))
    msg = str(e.value)
    assert "1 unexpected keys: extra.weight" in msg and "wrong shapes: blocks.0.norm1.weight (7,)" in msg
    assert "\n" not in msg


def test_truncated_file(tiny_ckpt, tmp_path):
    import shutil

    shutil.copytree(tiny_ckpt, tmp_path / "t")
    f = tmp_path / "t" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        load_teacher(str(tmp_path / "t"), get_domain("text"))


def test_wrong_vocab(tmp_path):
    build_tiny_checkpoint(tmp_path / "v", vocab_size=300, mask_id=299)
    with pytest.raises(CheckpointError, match="vocabulary mismatch"):
        load_teacher(str(tmp_path / "v"), get_domain("text"))


def test_wrong_domain(tmp_path):
    build_tiny_checkpoint(tmp_path / "p", domain="protein")
    with pytest.raises(CheckpointError, match="'protein' checkpoint, not 'text'"):
        load_teacher(str(tmp_path / "p"), get_domain("text"))


def test_atomic_save_keeps_old_checkpoint_on_failure(tiny_ckpt, tmp_path):
    import shutil

    target = tmp_path / "c"
    shutil.copytree(tiny_ckpt, target)
    before = (target / "model.safetensors").read_bytes()

    def boom(tmp):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(target, {"x": torch.zeros(2)}, {"domain": "text"}, extra=boom)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp dirs left behind


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    from didi_seq.io.checkpoint import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "r.json", b"{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
