"""Checks of a distillation config that need no model: run before anything loads.

Why: with ``steps ≤ disc_warmup_steps`` every iteration trains only the discriminator, and the
"student" written at the end is the teacher bit for bit (issue 17) — a silent no-op that costs
minutes and produces a file that claims to be a student.
"""

from __future__ import annotations

from ...errors import DidiError


def student_steps(cfg) -> int:
    """Iterations in which the student takes an optimiser step: all of them, less a method's
    discriminator-only warm-up (DiDi-Instruct's ``disc_warmup_steps``; methods without one have none)."""
    return max(0, cfg.steps - getattr(cfg, "disc_warmup_steps", 0))


def check_student_steps(cfg, allow: bool = False) -> str | None:
    """Refuse a run in which the student never steps; with ``allow``, return the warning instead."""
    if student_steps(cfg) > 0:
        return None
    problem = (f"--steps {cfg.steps} ≤ --disc-warmup-steps {cfg.disc_warmup_steps}: the student would never take a "
               f"step and the written student would equal the teacher")
    if allow:
        return problem
    raise DidiError(f"{problem}; pass --steps above {cfg.disc_warmup_steps} or a smaller --disc-warmup-steps "
                    "(or --allow-no-student-steps to train only the discriminator)")
