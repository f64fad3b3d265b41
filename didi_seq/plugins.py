"""The plugin manager: built-in and third-party plugins are found the same way.

Built-in domains (text, protein) are entry points of the ``didi_seq`` group exactly
like a third-party package's; only the core's own native checkpoint format and its
domain-agnostic metrics are registered directly, because the core cannot depend on a plugin.
"""

from __future__ import annotations

import functools

import pluggy

from . import hookspecs
from .errors import DidiError

ENTRY_POINT_GROUP = "didi_seq"


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("didi_seq")
    pm.add_hookspecs(hookspecs)
    from . import builtin_formats, builtin_samplers, metrics

    pm.register(builtin_formats, name="didi_seq.builtin_formats")
    pm.register(builtin_samplers, name="didi_seq.builtin_samplers")
    pm.register(metrics, name="didi_seq.metrics")
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


def samplers(domain_name: str | None = None) -> dict:
    """Registered samplers by name, first registration of a name wins; optionally those for one domain."""
    from .sampler import applies_to

    found: dict = {}
    # in registration order (pluggy calls the newest plugin first): the core's names come first and
    # win, so a plugin cannot silently replace ``ancestral``
    for impl in get_plugin_manager().hook.register_samplers.get_hookimpls():
        impl.function(register=lambda s: found.setdefault(s.name, s))
    return {n: s for n, s in found.items() if domain_name is None or applies_to(s, domain_name)}


def get_sampler(name: str, domain_name: str):
    known = samplers(domain_name)
    if name not in known:
        raise DidiError(f"unknown or unavailable sampler {name!r} for domain {domain_name!r}; "
                        f"available: {', '.join(known)}")
    return known[name]


def plugin_names() -> list[tuple[str, str]]:
    """(plugin name, distribution) for every loaded plugin."""
    pm = get_plugin_manager()
    dists = {id(p): f"{d.project_name} {d.version}" for p, d in pm.list_plugin_distinfo()}
    return [(pm.get_name(p) or "?", dists.get(id(p), "didi-seq core")) for p in pm.get_plugins()]
