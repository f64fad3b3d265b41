"""Prompt-conditioned distillation: the first N positions of every training row are its prompt.

LLaDA's supervised fine-tuning (arXiv 2502.09992, §2.3) leaves the prompt unmasked and masks only
the response. A student distilled for prompted sampling (``didi-seq sample --prompt``, which
writes ``[BOS] prompt`` at the start of each row) learns the same way: with ``--prompt-length N``
the first N positions of each target row, BOS included, are never masked. So they stay fixed in
the student's rollouts (which start from the row's prompt) and in the teacher's targets, and no
loss, reward or credit is counted there: every method counts masked positions only.

``answer_positions`` is the one place every core method asks which positions the forward process
may mask; ``PromptOption`` is the flag each core method config carries. Torch is imported inside,
so registering the methods stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DidiError
from ..options import option

if TYPE_CHECKING:
    import torch


@dataclass
class PromptOption:
    """A method config's ``--prompt-length`` (mixed into DiDi-Instruct's, SDTT's and MMD's configs)."""

    prompt_length: int = option(0, "Keep the first N positions of every training row (BOS included) fixed as its "
                                   "prompt: never masked in the student's rollouts or the teacher's targets, never "
                                   "scored (0: unconditional).")

    def validate(self) -> None:
        n = self.prompt_length
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DidiError(f"--prompt-length must be an integer ≥ 0, got {n!r}")
        super().validate()


def check_prompt_length(prompt_length: int, length: int) -> None:
    """The prompt leaves at least one position of the teacher's rows to generate."""
    if prompt_length >= length:
        raise DidiError(f"--prompt-length {prompt_length} leaves no position to generate in the teacher's rows of "
                        f"{length}; pass at most {length - 1}")


def answer_positions(spec, x: torch.Tensor, prompt_length: int = 0) -> torch.Tensor | None:
    """bool [N, L]: the positions of rows ``x`` the forward process may mask: the spec's maskable ones
    (``TeacherSpec.maskable``: not BOS/EOS or padding) after the first ``prompt_length``; None when every
    position may be."""
    import torch

    maskable = spec.maskable(x)
    if not prompt_length:
        return maskable
    answer = (torch.arange(x.shape[1], device=x.device) >= prompt_length).expand(x.shape)
    return answer if maskable is None else maskable & answer
