"""Config fields that are also command-line flags: one mechanism for samplers and distillation methods.

A sampler's config (a ``SamplerOptions`` dataclass) and a method's config (a ``MethodConfig``
dataclass) declare their options with ``option(default, help)``; every such field becomes a flag
of ``didi-seq sample`` / ``didi-seq distill`` (``disc_lr`` → ``--disc-lr``, a bool → ``--x/--no-x``,
``flag=`` names it otherwise). So a new sampler or method gets its flags, its ``--help`` lines and
its parsing for free, and a flag the chosen one does not declare is refused by name, never dropped.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import DidiError


def option(default, help: str, flag: str | None = None):
    """A config field that is also a flag (``flag``: its name if not the field's, e.g. "--positive")."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Flag:
    field: str
    option: str  # "--disc-lr"
    kind: type  # bool | int | float | str
    help: str
    default: Any


def flags_of(config: type) -> dict[str, Flag]:
    """The flags a config dataclass declares, by option string (bools also under ``--no-x``)."""
    hints = typing.get_type_hints(config)
    flags: dict[str, Flag] = {}
    for f in fields(config):
        if "help" not in f.metadata:
            continue
        kind = next((t for t in (bool, int, float, str) if t is hints[f.name] or t in typing.get_args(hints[f.name])), str)
        option_name = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        flag = Flag(f.name, option_name, kind, f.metadata["help"], default)
        flags[option_name] = flag
        if kind is bool:
            flags["--no-" + option_name[2:]] = flag
    return flags


def _convert(flag: Flag, text: str):
    try:
        return flag.kind(text)
    except ValueError:
        what = {int: "an integer", float: "a number"}.get(flag.kind, "a value")
        raise DidiError(f"{flag.option} expects {what}, got {text!r}") from None


def parse_flags(chosen: str, configs: dict[str, type], args: list[str], selector: str,
                command: str) -> dict[str, tuple[str, Any]]:
    """The options of ``configs[chosen]`` on a command line: {config field: (as written, value)}.

    ``configs``: every registered sampler's (or method's) config by name; ``selector`` the flag that
    chooses one ("--sampler", "--method"), ``command`` the command ("sample"). A flag of another one
    is refused by name (``--candidates`` with ``--sampler ancestral``), anything else unknown too.
    """
    mine = flags_of(configs[chosen])
    given: dict[str, tuple[str, Any]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        name, _, inline = arg.partition("=")
        if name not in mine:
            owners = [n for n, c in configs.items() if n != chosen and name in flags_of(c)]
            if owners:
                raise DidiError(f"{name} is an option of {selector} {' / '.join(owners)}, not of {selector} {chosen}")
            if not arg.startswith("--"):
                raise DidiError(f"unexpected argument {arg!r}")
            raise DidiError(f"no such option {name} (see `didi-seq {command} --help` for the options of {selector} {chosen})")
        flag = mine[name]
        if flag.kind is bool:
            if inline:
                raise DidiError(f"{name} takes no value")
            given[flag.field] = (name, not name.startswith("--no-"))
            continue
        if not inline and "=" not in arg:
            if i >= len(args):
                raise DidiError(f"{name} needs a value")
            inline, i = args[i], i + 1
        given[flag.field] = (f"{name} {inline}", _convert(flag, inline))
    return given


def flags_help(entries: dict[str, tuple[str, type]], selector: str) -> str:
    """The flags of every registered sampler or method ({name: (description, config)}), for ``--help``."""
    lines = []
    for name, (description, config) in entries.items():
        lines.append(f"{selector} {name}: {description}")
        rows = [(f"{opt}/--no-{opt[2:]}" if flag.kind is bool else f"{opt} {flag.kind.__name__.upper()}",
                 f"{flag.help} [default: {flag.default}]")
                for opt, flag in flags_of(config).items() if not (flag.kind is bool and opt.startswith("--no-"))]
        width = max((len(spelled) for spelled, _ in rows), default=0)
        lines += [f"  {spelled:<{width}}  {text}" for spelled, text in rows]
    return "\n".join(lines)
