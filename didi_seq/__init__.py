"""didi-seq: distil masked discrete diffusion teachers into few-step students.

The public face: what a plugin (a domain, a teacher format, a sampler, a scorer, a distillation
method) and a user of the Python API need, importable as ``from didi_seq import Domain``. Each name
is imported on first use, so ``import didi_seq`` stays cheap (no torch) for the CLI's ``--help``.
The layers behind it (docs/writing-a-plugin.md): ``models`` (process, DiT, teacher adapters and
formats), ``sampling``, ``evaluation``, ``training``, ``distill``, ``io``, ``registry``, ``domain``.
"""

from importlib import import_module

from ._version import __version__

# name -> the module that defines it
PUBLIC = {
    "DidiError": "errors", "CheckpointError": "errors", "DidiWarning": "errors", "install_command": "errors",
    "hookimpl": "registry.hookspecs", "get_domain": "registry.plugins",
    "Domain": "domain", "DomainTokenizer": "domain", "CharTokenizer": "domain.char_tokenizer",
    "TeacherAdapter": "models.teacher", "TeacherSpec": "models.teacher", "NativeTeacher": "models.teacher",
    "TeacherFormat": "models.formats", "DiT": "models.dit", "DiTConfig": "models.dit",
    "LogLinearSchedule": "models.process",
    "SamplerOptions": "sampling.contract", "SampleResult": "sampling.contract", "option": "options",
    "check_distribution": "sampling.contract",
    "Scorer": "evaluation.scorer", "EvalContext": "evaluation.scorer",
    "DistillMethod": "distill.method", "MethodConfig": "distill.method", "MethodContext": "distill.method",
    "TrainState": "training.state", "StateTrainer": "training.state",
    "SourceInfo": "io.provenance",
    "MaskedDiffusionModel": "api",
}
__all__ = ["__version__", *PUBLIC]


def __getattr__(name: str):
    if name not in PUBLIC:
        raise AttributeError(f"module 'didi_seq' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{PUBLIC[name]}"), name)
    globals()[name] = value
    return value
