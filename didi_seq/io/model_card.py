"""A Hugging Face-style model card (``README.md`` with YAML metadata) for every checkpoint.

Checkpoint directories already look like hub repositories (``config.json``,
``model.safetensors``); the card makes one uploadable as it is and tells a reader what the
weights are without opening JSON: library, license, data, the teacher a student was distilled
from, the method and the numbers known when it was saved. Everything comes from the
checkpoint's own ``config.json`` and ``provenance.json`` (written beside it, same values), so
the card never disagrees with them; the hand-written ``TRAINING.md`` of a shipped model
stays the long story.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from ..errors import install_command
from .provenance import CONFIG_KEYS, student_method

CARD_FILE = "README.md"
LICENSE = "apache-2.0"  # didi-seq's own; a card notes that the training data may carry another


def _yaml(value) -> str:
    """A YAML flow value: JSON scalars and lists are valid YAML, and quoting every string keeps it unambiguous."""
    return json.dumps(value, ensure_ascii=False)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")  # emphasis, code, links, headings, table cells


def _one_line(value) -> str:
    """``value`` as one line of text: provenance is untrusted, and a newline would start a heading or a table row."""
    return " ".join(str(value).split())


def _text(value) -> str:
    """An untrusted value as literal card text: one line, HTML escaped (no ``<script>``), markdown
    specials backslash-escaped (no link, heading, emphasis or table cell can be injected)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(_one_line(value), quote=True))


def _code(value) -> str:
    """An untrusted value as an inline code span (where nothing but a backtick is markup): one line, no backticks."""
    return "`" + _one_line(value).replace("`", "'") + "`"


def _hub_id(name: str | None) -> str | None:
    """``owner/name`` when ``name`` (possibly ``owner/name@revision``) is a hub id, not a local path or a label."""
    if not name:
        return None
    repo = name.split("@", 1)[0]
    if repo.count("/") == 1 and not repo.startswith((".", "/", "~")) and " " not in repo and not Path(repo).exists():
        return repo
    return None


def _dataset_id(corpus: str | None) -> str | None:
    """A corpus the hub knows by name (``openwebtext``, ``owner/name``), not an embedded or local one."""
    if not corpus or corpus.startswith(("embedded:", "owt:")) or corpus.startswith((".", "/", "~")) or Path(corpus).exists():
        return None
    return corpus


def headline(provenance: dict) -> dict:
    """The numbers known at save time: a teacher's validation NELBO, a student's last training metrics."""
    numbers = {}
    if provenance.get("val_nelbo") is not None:
        numbers["val_nelbo_nats_per_token"] = provenance["val_nelbo"]
    last = provenance.get("last_metrics") or {}
    for key in ("disc_acc", "reward", "kl", "entropy"):
        if key in last:
            numbers[key] = last[key]
    return numbers


def steps_claim(provenance: dict) -> str:
    """What the card says about the student's step count: the steps it was trained for when the method
    logs them (``student_nfe``, SDTT's round target), else the few-step range distillation aims at.

    Why: an SDTT run cut short (``--steps 1``, a ``--max-minutes`` stop) leaves a student trained for
    512 steps; a card promising 8–16 then misleads whoever samples it (issue 25)."""
    last = provenance.get("last_metrics") or {}
    if last.get("student_nfe") is None:
        return "it is meant to be sampled in few steps (8–16)."
    nfe = round(last["student_nfe"])
    rounds = (provenance.get(CONFIG_KEYS["student"]) or {}).get("rounds")
    where = f" (it stopped in round {round(last['round']) + 1} of {rounds})" if rounds and "round" in last else ""
    return f"it was trained to be sampled in {nfe} steps{where}."


def metadata(config: dict, provenance: dict) -> dict:
    kind, domain = config.get("kind", "model"), config.get("domain", "unknown")
    method = provenance.get("method") or ("MDLM NELBO pretraining" if kind == "teacher" else None)
    meta: dict = {"library_name": "didi-seq", "license": LICENSE,
                  "tags": ["didi-seq", "masked-diffusion", "discrete-diffusion", domain, kind]}
    if kind == "student":
        meta["tags"] += ["distillation", "few-step-generation"]
    dataset = _dataset_id(provenance.get("corpus"))
    if dataset:
        meta["datasets"] = [dataset]
    teacher = provenance.get("teacher") or {}
    base = (_hub_id(teacher.get("path")) or _hub_id(teacher.get("id"))) if kind == "student" else None
    if base:
        meta["base_model"] = base
    meta["didi_seq"] = {"kind": kind, "domain": domain, "method": method, "step": provenance.get("step"),
                        "headline": headline(provenance)}
    trained_nfe = (provenance.get("last_metrics") or {}).get("student_nfe")
    if trained_nfe is not None:
        meta["didi_seq"]["trained_nfe"] = round(trained_nfe)
    return meta


def render(config: dict, provenance: dict) -> str:
    meta = metadata(config, provenance)
    lines = ["---"]
    for key, value in meta.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {_yaml(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_yaml(value)}")
    lines.append("---")
    info = meta["didi_seq"]
    name = provenance.get("name") or f"{info['domain']}-{info['kind']}"
    teacher = provenance.get("teacher") or {}
    about = [f"# {_text(name)}", "",
             f"A masked (absorbing-state) discrete diffusion **{_text(info['kind'])}** for the {_code(info['domain'])} "
             f"domain, made with didi-seq ({_text(info['method'] or 'imported')}, step {_text(info['step'])}).", ""]
    if teacher:
        about += [f"Distilled from the teacher {_code(teacher.get('id'))} (sha256 {_code(str(teacher.get('sha256'))[:12])}…) "
                  f"with the {_code(student_method(info['method']))} method (`didi-seq plugins` lists each method's "
                  f"paper): {steps_claim(provenance)}", ""]
    about += ["## Use", "", "From a clone of the didi-seq repository (it is not on PyPI):", "",
              "    " + install_command(where=False),
              f"    didi-seq sample --domain {_one_line(info['domain'])} --checkpoint PATH_OR_HUB_ID --nfe 16 --num-samples 4",
              "", "## Training", ""]
    rows = [("command", provenance.get("command")), ("data", provenance.get("corpus") or provenance.get("teacher_pool")),
            ("wall-clock (s)", provenance.get("wall_clock_s")), ("didi-seq", provenance.get("didi_seq_version")),
            ("torch", provenance.get("torch_version")), ("created", provenance.get("created"))]
    rows += [(k, v) for k, v in info["headline"].items()]
    about += ["| | |", "|---|---|", *(f"| {_text(k)} | {_text(v)} |" for k, v in rows if v is not None), ""]
    about += ["Full provenance (every hyperparameter, data hashes) is in `provenance.json`; the architecture in "
              "`config.json`. License: the didi-seq code license; the training data may carry its own terms.", ""]
    return "\n".join(lines + [""] + about)


def write_model_card(directory: Path, config: dict, provenance: dict) -> None:
    (Path(directory) / CARD_FILE).write_text(render(config, provenance), encoding="utf-8")
