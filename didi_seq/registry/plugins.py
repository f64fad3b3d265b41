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


# One line per third-party plugin that failed (at import, in a hook, or with a bad registration): shown as
# warnings by the CLI (``plugin_warnings``); the other plugins and the built-in domains keep working.
_FAILURES: dict[str, str] = {}
_DISTS: dict[str, str] = {}  # entry-point name -> "project version", for `didi-seq plugins`


def _warn(plugin: str, problem: str) -> None:
    _FAILURES.setdefault(plugin, f"plugin {plugin!r} {problem}; it is skipped")


def plugin_warnings() -> list[str]:
    """What went wrong with plugins so far, one line each (after ``check_plugins`` for every hook)."""
    return list(_FAILURES.values())


def _describe(e: BaseException) -> str:
    """A plugin's failure in a few words: the exception's type and the first line of its message."""
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    if isinstance(e, ModuleNotFoundError) and e.name:
        return f"needs a missing module ({e.name})"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager with every ``didi_seq`` entry point registered, the core's first.

    Why each entry point is loaded alone: one broken third-party plugin (an import error, a missing
    dependency, ``sys.exit`` at import) must cost only its own domains, never every command; it is
    recorded as a warning instead. Built-ins load through the same path."""
    pm = pluggy.PluginManager("didi_seq")
    pm.add_hookspecs(hookspecs)
    found = []
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found.append((ep, f"{dist.metadata['Name']} {dist.version}"))
    missing = [m for m in CORE_HOOK_MODULES if not any(ep.value == m for ep, _ in found)]
    if missing:
        raise DidiError(f"didi-seq's own entry points are missing ({', '.join(missing)}): reinstall it (pip install -e .)")
    found.sort(key=lambda item: not item[0].value.startswith(CORE_PREFIX))  # stable: the core's first
    for ep, dist in found:
        if pm.has_plugin(ep.name) or ep.name in _FAILURES:
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - any failure of a plugin's import is that plugin's
            _warn(ep.name, f"({dist}) failed to load: {_describe(e)}")
            continue
        _DISTS[ep.name] = dist
    return pm


def _call_hook(impl, plugin: str, register) -> bool:
    """Run one plugin's hook implementation; a failure is that plugin's warning, not the command's end."""
    try:
        impl.function(register)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - isolate the plugin, whatever it raised
        _warn(plugin, f"failed in {impl.function.__name__}: {_describe(e)}")
        return False
    return True


def _registered(hook_name: str, listed: str = "registration") -> dict:
    """Everything a hook registers, by name; the first registration of a name wins for every hook.

    The core's entry points are registered first, so a third-party plugin cannot silently replace a
    built-in domain, teacher format, scorer, sampler or method by reusing its name. ``listed``: the
    winners in registration order, or in "call" order (newest plugin first, as pluggy calls hooks:
    the order teacher formats are tried in and scorers are reported in). A plugin whose hook raises or
    registers something without a string ``name`` contributes nothing and is reported (``plugin_warnings``).
    """
    pm = get_plugin_manager()
    impls = getattr(pm.hook, hook_name).get_hookimpls()  # registration order
    per_plugin = []
    for impl in impls:
        items: list = []
        if impl.plugin_name in _FAILURES or not _call_hook(impl, impl.plugin_name, items.append):
            continue
        bad = [obj for obj in items if not isinstance(getattr(obj, "name", None), str)]
        if bad:
            _warn(impl.plugin_name, f"registered {type(bad[0]).__name__} {str(bad[0])[:60]!r} in {hook_name}, "
                                    "which has no name")
            continue
        per_plugin.append(items)
    winners: dict = {}
    for items in per_plugin:
        for obj in items:
            winners.setdefault(obj.name, obj)
    if listed == "registration":
        return winners
    return {obj.name: obj for items in reversed(per_plugin) for obj in items if winners[obj.name] is obj}


HOOKS = ("register_domains", "register_teacher_formats", "register_scorers", "register_samplers", "register_methods")


def check_plugins() -> list[str]:
    """Call every registering hook once, so each broken plugin is known: the warnings (see ``plugin_warnings``)."""
    for hook in HOOKS:
        _registered(hook)
    return plugin_warnings()


def register_commands(app) -> None:
    """Let every plugin add its commands to the typer ``app``; a plugin whose hook fails adds none."""
    for impl in get_plugin_manager().hook.register_commands.get_hookimpls():
        if impl.plugin_name not in _FAILURES:
            _call_hook(impl, impl.plugin_name, app)


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
    names = [pm.get_name(p) or "?" for p in pm.get_plugins()]
    return [(n, _DISTS.get(n, "didi-seq core")) for n in names if n not in _FAILURES]
