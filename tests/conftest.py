import os
import tempfile

# Keep datasets' caches out of the user's home and never touch the network.
_cache = tempfile.mkdtemp(prefix="didi-test-hf-")
os.environ.setdefault("HF_HOME", _cache)
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_cache, "datasets"))
os.environ["HF_HUB_OFFLINE"] = "1"
# evaluate caches the scored real-data reference: never in the user's ~/.cache during tests
os.environ["DIDI_SEQ_CACHE"] = os.path.join(_cache, "didi-seq")
# The suite's exact comparisons are CPU numbers: commands default to the CPU even on a GPU
# machine; the GPU tests (tests/test_devices.py) ask for --device cuda explicitly.
os.environ["DIDI_SEQ_DEVICE"] = "cpu"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def build_tiny_checkpoint(path, vocab_size=None, mask_id=None, domain="text", length=16, seed=0):
    """A randomly initialised tiny DiT saved in the native format, with the text tokenizer."""
    from didi_seq.io.checkpoint import save_checkpoint
    from didi_seq.models.dit import DiT, DiTConfig
    from didi_seq.models.teacher import TeacherSpec
    from didi_seq.registry.plugins import get_domain

    tok = get_domain("text").load_tokenizer(None)
    vocab_size = vocab_size or tok.vocab_size
    mask_id = tok.mask_id if mask_id is None else mask_id
    torch.manual_seed(seed)
    cfg = DiTConfig(vocab_size=vocab_size, length=length, hidden=32, layers=1, heads=2, cond_dim=16)
    model = DiT(cfg)
    # zero-initialised output heads give uniform predictions; perturb them so samples depend on input
    torch.nn.init.normal_(model.output_layer.linear.weight, std=0.5)
    for b in model.blocks:
        torch.nn.init.normal_(b.adaLN_modulation.bias, std=0.5)
    spec = TeacherSpec(vocab_size=vocab_size, mask_id=mask_id, max_length=length)
    save_checkpoint(path, model.state_dict(),
                    {"domain": domain, "kind": "teacher", "model": cfg.to_dict(), "spec": spec.to_dict(),
                     "schedule": {"name": "loglinear", "eps": 1e-3}},
                    {"name": "tiny-test"}, tok.to_json())
    return path


def one_error_line(result, fragment):
    """The CLI's bad-input contract: non-zero exit and exactly one ``error:`` line naming the problem,
    never a traceback (typer's runner keeps an uncaught exception in ``result.exception``)."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed and "Traceback" not in result.stderr, f"a traceback instead of an error line: {result.exception!r}"
    assert fragment, "name what the error line must say: an empty fragment matches any error"
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
