"""What a trainer checkpoints: the network it trains, its EMA, the optimisers, the RNG streams, the step.

Pretraining and every distillation method hold one ``TrainState``; its ``state_dict`` is the
part of ``training_state.pt`` that an exact ``--resume`` restores. MDLM and DiDi-Instruct
evaluate the EMA weights, so checkpoints publish the average (``published``) and the raw
weights live only in the resume state.
"""

from __future__ import annotations

import torch

from .sharding import clone_module


class EMA:
    """Exponential moving average of parameters, with MDLM's warm-up of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        # every name of a tied parameter (e.g. ESM's shared embedding/output matrix) gets its average,
        # so a saved state never mixes averaged and raw copies of one tensor
        self.shadow = {k: v.detach().clone().float() for k, v in model.named_parameters(remove_duplicate=False)}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters(remove_duplicate=False):
            self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    def load(self, shadow: dict[str, torch.Tensor], updates: int) -> None:
        """Restore a saved average (resume states load on the CPU) onto the device the average lives on."""
        device = next(iter(self.shadow.values())).device
        self.shadow, self.updates = {k: v.to(device) for k, v in shadow.items()}, updates

    def state_for(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with parameters replaced by their averages."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}


class TrainState:
    """The trained network (under ``model_key`` in the resume state: "model" for a teacher, "student"),
    its EMA, the optimisers and RNG streams by the names they are saved under, and the step count."""

    def __init__(self, model: torch.nn.Module, ema_decay: float, optimizers: dict[str, torch.optim.Optimizer],
                 generators: dict[str, torch.Generator], model_key: str = "student"):
        self.model, self.model_key = model, model_key
        self.ema = EMA(model, ema_decay)
        self.optimizers, self.generators = optimizers, generators
        self.step = 0

    def state_dict(self) -> dict:
        """Everything an exact resume needs, loadable with ``weights_only`` (tensors, numbers, dicts)."""
        return {self.model_key: self.model.state_dict(), "ema": self.ema.shadow, "ema_updates": self.ema.updates,
                **{name: opt.state_dict() for name, opt in self.optimizers.items()},
                **{name: gen.get_state() for name, gen in self.generators.items()}, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state[self.model_key])
        self.ema.load(state["ema"], state["ema_updates"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])
        for name, gen in self.generators.items():
            gen.set_state(state[name])
        self.step = state["step"]

    def published(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint publishes: the model's state with its parameters averaged."""
        return self.ema.state_for(self.model)

    def ema_model(self) -> torch.nn.Module:
        """A frozen-in-eval copy of the model holding the averaged weights (sharded like the model:
        every rank must call this under --shard fsdp)."""
        m = clone_module(self.model)
        m.load_state_dict(self.published())
        return m.eval()


class StateTrainer:
    """Base of a trainer whose networks live in ``self.state`` (a ``TrainState``): the step count, the
    resume state and the published weights are read from there, alike for pretraining and every method."""

    state: TrainState

    @property
    def step_count(self) -> int:
        return self.state.step

    @step_count.setter
    def step_count(self, value: int) -> None:
        self.state.step = value

    def state_dict(self) -> dict:
        return self.state.state_dict()

    def load_state_dict(self, state: dict, source: str = "") -> None:
        self.state.load_state_dict(state)

    def student_state(self) -> dict[str, torch.Tensor]:
        """Checkpoints publish the EMA weights (as the papers evaluate them)."""
        return self.state.published()
