"""``--prompt-length``: every core distillation method keeps the first N positions of its rows fixed.

On the enumerable toy (distill_toy.py: 3 tokens, length 3) whose data rows all begin with token 2, each
method's trainer takes real steps while every network it calls is watched: with --prompt-length 1 no
input (student rollout, teacher target, discriminator, MMD features) has position 0 masked or other than
the row's prompt, and no denoiser is ever asked for position 0, so it gets no loss, reward or credit.
The same trainers without a prompt mask position 0 (the check can fail)."""

import pytest
import torch
from distill_toy import MASK, L, toy_teacher
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.distill.didi_instruct.config import DistillConfig
from didi_seq.distill.didi_instruct.trainer import build_distiller
from didi_seq.distill.method import MethodContext
from didi_seq.distill.prompt import answer_positions
from didi_seq.distill.real_data import MMDTrainer, SDTTTrainer
from didi_seq.distill.real_data_config import MMDConfig, SDTTConfig
from didi_seq.domain import Domain
from didi_seq.errors import DidiError
from didi_seq.models.teacher import TeacherSpec
from didi_seq.training.distributed import Ranks
from didi_seq_cli.main import app

PROMPT_TOKEN = 2


def toy_rows(n: int = 64) -> torch.Tensor:
    rows = torch.randint(0, 3, (n, L), generator=torch.Generator().manual_seed(0))
    rows[:, 0] = PROMPT_TOKEN
    return rows


def toy_context() -> MethodContext:
    rows = toy_rows()
    domain = Domain(name="toy", description="toy", load_tokenizer=lambda path: None,
                    load_corpus=lambda src: {"train": rows, "name": "toy", "validation_sha256": "0"},
                    make_rows=lambda dataset, tokenizer, length: dataset)
    return MethodContext(domain=domain, teacher=toy_teacher(0), tokenizer=None, corpus=None, ranks=Ranks())


class Watch:
    """Records the ids every watched network sees and the positions a denoiser is asked for."""

    def __init__(self):
        self.inputs, self.asked = [], []

    def denoiser(self, fn):
        def watched(x, positions, t):
            self.inputs.append(x.detach().clone())
            self.asked.append(positions.clone())
            return fn(x, positions, t)
        return watched

    def ids(self, fn):
        def watched(x, *rest):
            self.inputs.append(x.detach().clone())
            return fn(x, *rest)
        return watched


def watched_trainer(method: str, prompt_length: int):
    ctx, watch = toy_context(), Watch()
    if method == "didi-instruct":
        cfg = DistillConfig(steps=4, batch_size=4, group_size=2, disc_warmup_steps=0, bf16=False, prompt_length=prompt_length)
        trainer = build_distiller(ctx, cfg)
        trainer.teacher_fn = watch.denoiser(trainer.teacher_fn)
        trainer.disc.register_forward_pre_hook(lambda module, args: watch.inputs.append(args[0].detach().clone()))
    elif method == "sdtt":
        trainer = SDTTTrainer(ctx, SDTTConfig(steps=4, batch_size=4, bf16=False, prompt_length=prompt_length))
        round_teacher = trainer.teacher_fn
        trainer.teacher_fn = lambda: watch.denoiser(round_teacher())
    else:
        trainer = MMDTrainer(ctx, MMDConfig(steps=4, batch_size=4, feature_block=0, bf16=False, prompt_length=prompt_length))
        trainer.features = watch.ids(trainer.features)
        trainer.teacher_denoiser = watch.denoiser(trainer.teacher_denoiser)
    trainer.student_fn = watch.denoiser(trainer.student_fn)
    return trainer, watch


@pytest.mark.parametrize("method", ["didi-instruct", "sdtt", "mmd"])
def test_prompt_positions_are_never_masked_asked_or_changed(method):
    trainer, watch = watched_trainer(method, prompt_length=1)
    for _ in range(3):
        metrics = trainer.step()
    assert all(isinstance(v, float | int) for v in metrics.values())
    assert watch.inputs and watch.asked
    for x in watch.inputs:  # the student's rollouts, the teacher's targets, the discriminator's and MMD's inputs
        ids = x.argmax(-1) if x.is_floating_point() else x
        assert (ids[:, 0] == PROMPT_TOKEN).all()
    for asked in watch.asked:  # no log-prob, hence no loss or credit, at the prompt
        assert not asked[:, 0].any() and asked[:, 1:].any()


@pytest.mark.parametrize("method", ["didi-instruct", "sdtt", "mmd"])
def test_without_a_prompt_position_zero_is_masked(method):
    """The control: the watch above can see a masked position 0 when the method is free to mask it."""
    trainer, watch = watched_trainer(method, prompt_length=0)
    for _ in range(3):
        trainer.step()
    assert any((x[:, 0] == MASK).any() for x in watch.inputs if not x.is_floating_point())
    assert any(asked[:, 0].any() for asked in watch.asked)


def test_answer_positions_keep_the_spec_frame_and_drop_the_prompt():
    spec = TeacherSpec(vocab_size=8, mask_id=7, max_length=6, never_mask=[0, 2], pad_id=1)
    x = torch.tensor([[0, 5, 6, 4, 2, 1], [0, 5, 2, 1, 1, 1]])
    assert answer_positions(spec, x, 2).tolist() == [[False, False, True, True, False, False], [False] * 6]
    assert answer_positions(spec, x, 0).tolist() == spec.maskable(x).tolist()
    plain = TeacherSpec(vocab_size=8, mask_id=7, max_length=6)
    assert answer_positions(plain, x, 0) is None
    assert answer_positions(plain, x, 4).tolist() == [[False] * 4 + [True] * 2] * 2


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_prompt_length_must_be_a_count(bad):
    for config in (DistillConfig, SDTTConfig, MMDConfig):
        with pytest.raises(DidiError, match="--prompt-length must be an integer ≥ 0"):
            config(prompt_length=bad).validate()


@pytest.mark.parametrize("method", ["didi-instruct", "sdtt", "mmd"])
def test_cli_prompt_length_that_leaves_nothing_to_generate_is_one_error_line(tiny_ckpt, tmp_path, method):
    r = CliRunner().invoke(app, ["distill", "--domain", "text", "--method", method, "--teacher", str(tiny_ckpt),
                                 "--out", str(tmp_path / "run"), "--steps", "7", "--prompt-length", "16",
                                 *(["--disc-warmup-steps", "0"] if method == "didi-instruct" else [])])
    one_error_line(r, "--prompt-length 16 leaves no position to generate in the teacher's rows of 16")
    assert not (tmp_path / "run").exists()
