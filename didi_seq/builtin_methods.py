"""The core's own distillation method, DiDi-Instruct (arXiv 2509.25035).

Registered directly by the plugin manager like the core's checkpoint format; it is
registered through ``register_methods`` exactly as a plugin's method would be. The
trainer (and torch) is imported only when a run builds it.
"""

from __future__ import annotations

from .distill.config import DistillConfig
from .distill.method import DistillMethod, MethodContext
from .hookspecs import hookimpl


def _build_didi_instruct(ctx: MethodContext, cfg: DistillConfig):
    from .distill.trainer import build_distiller

    return build_distiller(ctx, cfg)


DIDI_INSTRUCT = DistillMethod(
    name="didi-instruct",
    description="DiDi-Instruct: adversarial integral-KL policy gradient (a discriminator rewards the student)",
    config=DistillConfig,
    build=_build_didi_instruct,
)


@hookimpl
def register_methods(register):
    register(DIDI_INSTRUCT)
