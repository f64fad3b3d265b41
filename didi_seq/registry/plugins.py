"""The plugin manager: built-in and third-party plugins are found the same way.

Everything is an entry point of the ``didi_seq`` group, exactly like a third-party
package's: the core's own hook modules (native checkpoint format, samplers, methods,
domain-agnostic metrics; their names start with ``didi_seq.``), the built-in domains (text,
protein) and any installed plugin. The core's entry points are registered first, so where
names collide (first registration wins, for every hook) a plugin cannot replace a built-in
domain, format, scorer, sampler or method. Nothing here imports a hook module or another layer of
the core, so every layer (loaders, samplers, the CLI) may use the plugin manager without a cycle.
"""

from __future__ import annotations

import functools
import importlib.metadata

import pluggy

from ..errors import DidiError
from . import hookspecs

ENTRY_POINT_GROUP = "didi_seq"
CORE_PREFIX = "didi_seq."
CORE_HOOK_MODULES = ("didi_seq.models.formats", "didi_seq.sampling.builtin", "didi_seq.distill.builtin",
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


def _registered(hook_name: str, listed: str = "registration") -> dict:
    """Everything a hook registers, by name; the first registration of a name wins for every hook.

    The core's entry points are registered first, so a third-party plugin cannot silently replace a
    built-in domain, teacher format, scorer, sampler or method by reusing its name. ``listed``: the
    winners in registration order, or in "call" order (newest plugin first, as pluggy calls hooks:
    the order teacher formats are tried in and scorers are reported in).
    """
    impls = getattr(get_plugin_manager().hook, hook_name).get_hookimpls()  # registration order
    per_plugin = []
    for impl in impls:
        items: list = []
        impl.function(register=items.append)
        per_plugin.append(items)
    winners: dict = {}
    for items in per_plugin:
        for obj in items:
            winners.setdefault(obj.name, obj)
    if listed == "registration":
        return winners
    return {obj.name: obj for items in reversed(per_plugin) for obj in items if winners[obj.name] is obj}


def _for_domain(found: dict, domain_name: str | None) -> dict:
    """The entries whose ``domains`` include ``domain_name`` (``domains`` None: every domain)."""
    return {n: x for n, x in found.items() if domain_name is None or getattr(x, "domains", None) is None
            or domain_name in x.domains}


def domains() -> dict:
    return _registered("register_domains", listed="call")


def get_domain(name: str):
    known = domains()
    if name not in known:
        listed = ", ".join(sorted(known)) or "none (is didi-seq installed with its plugins?)"
        raise DidiError(f"unknown domain {name!r}; known domains: {listed}")
    return known[name]


def teacher_formats() -> list:
    """Teacher formats in the order their ``detect`` is tried (plugins' before the core's native one)."""
    return list(_registered("register_teacher_formats", listed="call").values())


def scorers(domain_name: str | None = None) -> list:
    """Registered scorers; optionally those for one domain."""
    return list(_for_domain(_registered("register_scorers", listed="call"), domain_name).values())


def samplers(domain_name: str | None = None) -> dict:
    """Registered samplers by name; optionally those for one domain."""
    return _for_domain(_registered("register_samplers"), domain_name)


def get_sampler(name: str, domain_name: str):
    known = samplers(domain_name)
    if name not in known:
        raise DidiError(f"unknown or unavailable sampler {name!r} for domain {domain_name!r}; "
                        f"available: {', '.join(known)}")
    return known[name]


def methods() -> dict:
    """Registered distillation methods by name (each checks its config when it is made)."""
    return _registered("register_methods")


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
