"""The core's own distillation methods: DiDi-Instruct (arXiv 2509.25035), SDTT (arXiv 2410.21035)
and representation-space MMD (arXiv 2610.06648).

Loaded through the ``didi_seq`` entry-point group like any plugin (``didi_seq.registry.plugins``
registers the core's entry points first) and registered through ``register_methods`` exactly
as a plugin's method would be. Each trainer (and torch) is imported only when a run builds it.
"""

from __future__ import annotations

from ..registry.hookspecs import hookimpl
from .didi_instruct.config import DistillConfig
from .method import DistillMethod, MethodContext
from .real_data_config import MMDConfig, SDTTConfig


def _build_didi_instruct(ctx: MethodContext, cfg: DistillConfig):
    from .didi_instruct.trainer import build_distiller

    return build_distiller(ctx, cfg)


DIDI_INSTRUCT = DistillMethod(
    name="didi-instruct",
    description="DiDi-Instruct (arXiv 2509.25035): adversarial integral-KL policy gradient (a discriminator rewards the student)",
    config=DistillConfig,
    build=_build_didi_instruct,
)


def _build_sdtt(ctx: MethodContext, cfg: SDTTConfig):
    from .real_data import SDTTTrainer

    return SDTTTrainer(ctx, cfg)


SDTT = DistillMethod(
    name="sdtt",
    description="SDTT (arXiv 2410.21035): self-distillation through time "
                "(one student step learns two teacher steps; rounds halve the steps)",
    config=SDTTConfig,
    build=_build_sdtt,
)


def _build_mmd(ctx: MethodContext, cfg: MMDConfig):
    from .real_data import MMDTrainer

    return MMDTrainer(ctx, cfg)


MMD = DistillMethod(
    name="mmd",
    description="representation-space MMD (arXiv 2610.06648): REINFORCE on an RBF-MMD reward "
                "between fills and real data in teacher features",
    config=MMDConfig,
    build=_build_mmd,
)


@hookimpl
def register_methods(register):
    register(DIDI_INSTRUCT)
    register(SDTT)
    register(MMD)
