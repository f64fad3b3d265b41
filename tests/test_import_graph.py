"""The import graph: no cycles (lazy imports inside functions included), and the core never
imports a plugin or the CLI.

Lazy imports keep ``didi-seq --help`` fast, but they also hide cycles from Python until the one
call path that closes them runs; so every ``import`` statement anywhere in a module counts here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = "didi_seq"
# the example plugin is a separate distribution, but it is what third-party authors copy
EXTRA_PACKAGES = {"didi_seq_dna": "examples/didi-seq-dna/didi_seq_dna"}


def package_dirs() -> dict[str, Path]:
    """Import name → source folder, as pyproject.toml's package-dir maps them (cli/ is ``didi_seq_cli``)."""
    table = re.search(r"^package-dir = \{(.*)\}$", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    mapping = dict(re.findall(r'"([\w.]+)" = "([^"]+)"', table))
    return {name: ROOT / folder for name, folder in {**mapping, **EXTRA_PACKAGES}.items()}


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Every module of the given packages (subfolders included) by dotted name."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imported_modules(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``source`` (module ``name``) imports, at any nesting depth."""
    here = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {owner for t in targets if (owner := _owning_module(t, known)) is not None and owner != name}


def _owning_module(target: str, known: set[str]) -> str | None:
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def import_graph() -> dict[str, set[str]]:
    files = module_files(package_dirs())
    known = set(files)
    return {name: imported_modules(name, path.read_text(), path.name == "__init__.py", known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- the checker itself, on toy inputs --------------------------------------------------------


def test_lazy_and_relative_imports_are_edges():
    known = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    source = "import os\nfrom . import b\ndef f():\n    from .sub.c import thing\n    import pkg.sub\n"
    assert imported_modules("pkg.a", source, False, known) == {"pkg.b", "pkg.sub.c", "pkg.sub"}
    # inside a package's __init__, `.` is the package itself; `..` climbs one level
    assert imported_modules("pkg.sub", "from .c import x\nfrom .. import a", True, known) == {"pkg.sub.c", "pkg.a"}


def test_find_cycle_finds_a_long_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# -- the repository ----------------------------------------------------------------------------


def test_every_package_is_parsed():
    graph = import_graph()
    for package in (CORE, "didi_seq_cli", "didi_seq_text", "didi_seq_protein", "didi_seq.distill"):
        assert package in graph
    # a lazy import the scan must see: the CLI imports the core only inside its commands
    assert "didi_seq.registry.plugins" in graph["didi_seq_cli.main"]


def test_no_import_cycles_lazy_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_imports_only_the_core():
    """didi_seq never imports a plugin (built-ins load through entry points like anyone's) nor the CLI."""
    bad = sorted(f"{m} imports {t}" for m, targets in import_graph().items() if _in_package(m, CORE)
                 for t in targets if not _in_package(t, CORE))
    assert not bad, "; ".join(bad)


def test_plugins_do_not_import_each_other_or_the_cli():
    """A plugin builds on the core only, so each can be installed (or removed) on its own."""
    graph = import_graph()
    plugins = [p for p in package_dirs() if p not in (CORE, "didi_seq_cli")]
    bad = sorted(f"{m} imports {t}" for p in plugins for m, targets in graph.items() if _in_package(m, p)
                 for t in targets if not (_in_package(t, p) or _in_package(t, CORE)))
    assert not bad, "; ".join(bad)


# -- the layers ----------------------------------------------------------------------------------
# Top-level helpers every layer may use, and which other layers each may import (nothing above it):
# io / domain / registry → models → sampling, evaluation, training → distill → api and the CLI.
HELPERS = {"didi_seq.errors", "didi_seq._version", "didi_seq.devices", "didi_seq.numbers", "didi_seq.options",
           "didi_seq.limits"}
MAY_IMPORT = {
    "io": set(),
    "domain": set(),
    "registry": set(),
    "models": {"io", "registry"},
    "sampling": {"io", "registry", "models", "domain"},
    "evaluation": {"io", "registry"},
    "training": {"io", "models", "domain"},
    "distill": {"io", "registry", "models", "domain", "sampling", "training"},
}
# what a plugin may import besides the public face `didi_seq` (docs/writing-a-plugin.md lists them)
PLUGIN_SURFACE = ("didi_seq.models", "didi_seq.io", "didi_seq.domain", "didi_seq.evaluation", "didi_seq.devices",
                  "didi_seq.training.pretrain")


def layer_of(module: str) -> str | None:
    """``didi_seq.models.dit`` → "models"; a helper or top-level module (api) → None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in graph.items():
        if not _in_package(m, CORE) or (own := layer_of(m)) is None:
            continue
        for t in targets:
            if not _in_package(t, CORE) or t in HELPERS:
                continue
            other = layer_of(t)
            if other != own and other not in MAY_IMPORT[own]:
                bad.append(f"{m} ({own}) imports {t} ({other or 'a top-level module'})")
    return sorted(bad)


def test_layering_checker_catches_a_model_importing_distillation():
    graph = {"didi_seq.models.teacher": {"didi_seq.distill.networks", "didi_seq.errors"},
             "didi_seq.sampling.generate": {"didi_seq.models.loading", "didi_seq.api"}}
    assert layering_violations(graph) == [
        "didi_seq.models.teacher (models) imports didi_seq.distill.networks (distill)",
        "didi_seq.sampling.generate (sampling) imports didi_seq.api (a top-level module)"]


def test_each_layer_imports_only_the_layers_below_it_lazy_imports_included():
    bad = layering_violations(import_graph())
    assert not bad, "; ".join(bad)


def test_models_import_nothing_from_sampling_training_or_distillation():
    """The model layer (process, DiT, adapters, formats, loading) stands on its own: the distillers and
    samplers build on it, never the reverse (teacher.py once imported distill/networks.py)."""
    graph = import_graph()
    bad = sorted(f"{m} imports {t}" for m, targets in graph.items() if _in_package(m, "didi_seq.models")
                 for t in targets if any(_in_package(t, f"didi_seq.{up}") for up in ("sampling", "training", "distill")))
    assert not bad, "; ".join(bad)


def test_the_core_never_imports_its_public_face():
    """``didi_seq/__init__`` re-exports names of every layer: a core module importing it would import all of them."""
    bad = sorted(m for m, targets in import_graph().items() if _in_package(m, CORE) and m != CORE and CORE in targets)
    assert not bad, f"{bad} import the package `didi_seq` itself; import the defining module instead"


def test_the_public_face_names_exist():
    import didi_seq

    for name in didi_seq.PUBLIC:
        assert getattr(didi_seq, name) is not None, name


def test_plugins_import_the_public_face_and_documented_submodules_only():
    graph = import_graph()
    plugins = [p for p in package_dirs() if p not in (CORE, "didi_seq_cli")]
    bad = sorted(f"{m} imports {t}" for p in plugins for m, targets in graph.items() if _in_package(m, p)
                 for t in targets if _in_package(t, CORE) and t != CORE and not any(_in_package(t, s) for s in PLUGIN_SURFACE))
    assert not bad, "; ".join(bad)
