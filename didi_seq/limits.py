"""Upper bounds on every size a user can type: one place, one error line each.

A typo'd size must fail at once with a sentence, not after the kernel's OOM killer, a segfault
in the thread pool or days of bootstrap resamples. Where a bound depends on the machine it is
derived from it (memory, cores); where it does not, the constant says why it is far beyond
any real use. Each check runs before the allocation it guards.
"""

from __future__ import annotations

import os

from .errors import DidiError

GIB = 1 << 30
# Bootstrap CIs: 10k resamples put a 95% percentile to ~0.2% of its spread; 100k is beyond any use,
# and each resample recomputes the aggregate over every sample.
MAX_BOOTSTRAP = 100_000
# Seeds go to torch generators as 64-bit integers, plus small per-stream offsets (seed + 7919).
MAX_SEED = (1 << 63) - (1 << 20)
# One JSONL record is one sample: at most a model's length of tokens (a few kB of text and ids);
# 1 MiB is ~100x the longest real one and bounds what one line costs to parse.
MAX_RECORD_BYTES = 1 << 20
# A record read into Python (its text tokenized into int lists when it carries no ``tokens``) takes
# up to ~150x its JSON size; a samples file may therefore hold at most memory / this many bytes.
RECORD_EXPANSION = 200


def physical_memory() -> int:
    """This machine's RAM in bytes (64 GiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 * GIB


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_int(option: str, value, low: int = 1, high: int | None = None) -> int:
    """``value`` is an int (not a bool, not a string) in [low, high]; one error naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DidiError(f"{option} must be an integer, got {value!r}")
    if value < low:
        want = {0: "0 or positive", 1: "a positive integer"}.get(low, f">= {low}")
        raise DidiError(f"{option} must be {want}, got {value}")
    if high is not None and value > high:
        raise DidiError(f"{option} {value} is above its limit of {high}")
    return value


def check_threads(threads: int, option: str = "--threads") -> int:
    """At most 4x this process's cores: more threads than that only contend, and torch's pool crashes
    (segfault, abort) when asked for tens of thousands."""
    limit = 4 * usable_cores()
    check_int(option, threads)
    if threads > limit:
        raise DidiError(f"{option} {threads} is more threads than this machine can use (it has {usable_cores()} "
                        f"cores; at most {limit}, whether from --threads or DIDI_SEQ_THREADS)")
    return threads


def check_rows(option: str, rows: int, row_bytes: int, what: str) -> int:
    """A batch of ``rows`` whose every row needs at least ``row_bytes`` (``what``) fits in this machine's RAM."""
    check_int(option, rows)
    need, have = rows * max(row_bytes, 1), physical_memory()
    if need > have:
        raise DidiError(f"{option} {rows} needs at least {need / GIB:.1f} GiB for {what} alone, more than this "
                        f"machine's {have / GIB:.1f} GiB of memory; at most {max(have // max(row_bytes, 1), 1)} fit")
    return rows


def check_bootstrap(resamples: int | None) -> None:
    if resamples is not None:
        check_int("--bootstrap", resamples, low=0, high=MAX_BOOTSTRAP)


def check_seed(seed, option: str = "--seed") -> int:
    return check_int(option, seed, low=0, high=MAX_SEED)


def max_samples_file_bytes() -> int:
    """The largest samples file evaluate reads on this machine (see ``RECORD_EXPANSION``)."""
    return max(physical_memory() // RECORD_EXPANSION, 64 << 20)
