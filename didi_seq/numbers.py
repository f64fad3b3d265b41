"""Numeric options and config values: finite and in range, or one error naming the option.

``float("inf")`` and ``nan`` parse as floats, so a command line or a saved config can carry
them; a NaN learning rate trains to a NaN checkpoint and exits 0, a NaN guidance scale
samples garbage. Every float a command uses passes through ``check_range`` (or, for a
config dataclass, ``check_float_fields``) first.
"""

from __future__ import annotations

import math
from dataclasses import fields

from .errors import DidiError


def check_range(name: str, value, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a finite real number within [low, high] (open ends where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DidiError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise DidiError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise DidiError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")


def check_float_fields(config, flag: bool = True) -> None:
    """Every float field of a config dataclass is finite (ranges are the config's own business);
    ``flag`` names them as command-line options (``--student-lr``)."""
    for f in fields(config):
        if f.type in ("float", float):
            name = f"--{f.name.replace('_', '-')}" if flag else f.name
            check_range(name, getattr(config, f.name))
