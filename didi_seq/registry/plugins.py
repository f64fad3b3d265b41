"""The plugin manager: built-in and third-party plugins are found the same way.

Everything is an entry point of the ``didi_seq`` group, exactly like a third-party
package's: the core's own hook modules (native checkpoint format, samplers, methods,
domain-agnostic metrics; their names start with ``didi_seq.``), the built-in domains (text,
protein) and any installed plugin. The core's entry points are registered first, so where
names collide (first registration wins) a plugin cannot replace a core sampler or method.
Nothing here imports a hook module by name, so the modules those hooks build on (samplers,
loaders) may use the plugin manager without an import cycle.
"""

from __future__ import annotations

import functools
import importlib.metadata

import pluggy

from ..errors import DidiError
from . import hookspecs

ENTRY_POINT_GROUP = "didi_seq"
CORE_PREFIX = "didi_seq."
CORE_HOOK_MODULES = ("didi_seq.models.native_format", "didi_seq.sampling.builtin", "didi_seq.distill.builtin",
                     "didi_seq.evaluation.metrics")


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("didi_seq")
    pm.add_hookspecs(hookspecs)
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    missing = [m for m in CORE_HOOK_MODULES if not any(ep.value == m for ep in found)]
    if missing:
        raise DidiError(f"didi-seq's own entry points are missing ({', '.join(missing)}): reinstall it (pip install -e .)")
    for ep in found:
        if ep.value.startswith(CORE_PREFIX):
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _collect(hook_name: str) -> list:
    items: list = []
    getattr(get_plugin_manager().hook, hook_name)(register=items.append)
    return items


def domains() -> dict:
    found = {}
    for d in _collect("register_domains"):
        found.setdefault(d.name, d)
    return found


def get_domain(name: str):
    known = domains()
    if name not in known:
        listed = ", ".join(sorted(known)) or "none (is didi-seq installed with its plugins?)"
        raise DidiError(f"unknown domain {name!r}; known domains: {listed}")
    return known[name]


def teacher_formats() -> list:
    return _collect("register_teacher_formats")


def scorers(domain_name: str | None = None) -> list:
    """Registered scorers, first registration of a name wins; optionally those for one domain."""
    found: dict = {}
    for s in _collect("register_scorers"):
        found.setdefault(s.name, s)
    return [s for s in found.values() if domain_name is None or s.applies_to(domain_name)]


def _first_registered(hook_name: str) -> dict:
    """Named objects of a hook in registration order (pluggy calls the newest plugin first): the
    core's entry points are registered first, so their names win and a plugin cannot silently
    replace ``ancestral`` or ``didi-instruct``."""
    found: dict = {}
    for impl in getattr(get_plugin_manager().hook, hook_name).get_hookimpls():
        impl.function(register=lambda obj: found.setdefault(obj.name, obj))
    return found


def samplers(domain_name: str | None = None) -> dict:
    """Registered samplers by name, first registration of a name wins; optionally those for one domain."""
    from ..sampling.contract import applies_to

    found = _first_registered("register_samplers")
    return {n: s for n, s in found.items() if domain_name is None or applies_to(s, domain_name)}


def get_sampler(name: str, domain_name: str):
    known = samplers(domain_name)
    if name not in known:
        raise DidiError(f"unknown or unavailable sampler {name!r} for domain {domain_name!r}; "
                        f"available: {', '.join(known)}")
    return known[name]


def methods() -> dict:
    """Registered distillation methods by name, first registration of a name wins."""
    from ..distill.method import check_config

    found = _first_registered("register_methods")
    for m in found.values():
        check_config(m)
    return found


def get_method(name: str):
    known = methods()
    if name not in known:
        raise DidiError(f"unknown distillation method {name!r}; known methods: {', '.join(sorted(known)) or 'none'}")
    return known[name]


def plugin_names() -> list[tuple[str, str]]:
    """(plugin name, distribution) for every loaded plugin."""
    pm = get_plugin_manager()
    dists = {id(p): f"{d.project_name} {d.version}" for p, d in pm.list_plugin_distinfo()}
    return [(pm.get_name(p) or "?", dists.get(id(p), "didi-seq core")) for p in pm.get_plugins()]
