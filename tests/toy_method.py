"""A toy distillation method, registered from a test plugin exactly as a third-party one would be.

The student is a copy of the teacher trained to match the teacher's prediction at the
all-mask state (a KL); it is small, but uses the whole method interface: a config with
its own flag, build, step, resume state, published weights and an artifact file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from didi_seq import DistillMethod, MethodConfig, MethodContext, option
from didi_seq.registry.hookspecs import hookimpl


@dataclass
class ToyConfig(MethodConfig):
    steps: int = 2
    ckpt_every: int = 1
    seed: int = 0
    threads: int | None = None
    toy_lr: float = option(1e-3, "Toy: the student's SGD learning rate.")
    rows: int = option(2, "Toy: all-mask rows per step.")

    def validate(self) -> None:
        from didi_seq.errors import DidiError

        if self.rows <= 0:
            raise DidiError(f"--rows must be positive, got {self.rows}")


class ToyTrainer:
    def __init__(self, ctx: MethodContext, cfg: ToyConfig):
        import torch

        torch.manual_seed(cfg.seed)
        self.cfg, self.teacher = cfg, ctx.teacher
        self.student = ctx.teacher.student_copy()
        self.opt = torch.optim.SGD(self.student.parameters(), lr=cfg.toy_lr)
        self.student_fn = ctx.teacher.denoiser(self.student, bf16=False)
        self.teacher_fn = ctx.teacher.denoiser(ctx.teacher.model, bf16=False)
        self.data_meta = {"toy_rows": cfg.rows}
        self.step_count = 0

    def step(self) -> dict:
        import torch

        spec, dev = self.teacher.spec, self.teacher.device
        x = torch.full((self.cfg.rows, spec.max_length), spec.mask_id, device=dev)
        every, t = torch.ones_like(x, dtype=torch.bool), torch.ones(self.cfg.rows, device=dev)
        with torch.no_grad():
            target = self.teacher_fn(x, every, t)
        log_p = self.student_fn(x, every, t)
        loss = (target.exp() * (target - log_p)).sum(-1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step_count += 1
        return {"step": self.step_count, "loss": round(loss.item(), 6)}

    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict, source: str) -> None:
        self.student.load_state_dict(state["student"])
        self.opt.load_state_dict(state["opt"])
        self.step_count = state["step"]

    def student_state(self) -> dict:
        return self.student.state_dict()

    def save_artifacts(self, tmp: Path) -> None:
        (tmp / "toy.json").write_text(json.dumps({"rows": self.cfg.rows}))


TOY = DistillMethod(name="toy", description="a test method: match the teacher at the all-mask state",
                    config=ToyConfig, build=ToyTrainer)


@hookimpl
def register_methods(register):
    register(TOY)
