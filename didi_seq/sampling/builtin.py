"""The core's own samplers, ``ancestral``, ``dilated`` and ``rgas``.

Registered by the plugin manager like the core's teacher format (the core cannot depend
on a plugin); a domain plugin or third party registers its samplers through the same hook.
"""

from __future__ import annotations

from ..registry.hookspecs import hookimpl


@hookimpl
def register_samplers(register):
    from .ancestral import AncestralSampler
    from .dilated import DilatedSampler
    from .rgas import RGASSampler

    register(AncestralSampler())
    register(DilatedSampler())
    register(RGASSampler())
