"""pluggy hook specifications: the whole surface a domain plugin implements.

A plugin is any module with ``@hookimpl`` functions, listed under the ``didi_seq``
entry-point group. Each hook receives a ``register`` callable (or the typer app)
and calls it once per thing it contributes.
"""

import pluggy

hookspec = pluggy.HookspecMarker("didi_seq")
hookimpl = pluggy.HookimplMarker("didi_seq")


@hookspec
def register_domains(register):
    """Register ``didi_seq.domain.Domain`` objects: register(domain)."""


@hookspec
def register_teacher_formats(register):
    """Register ``didi_seq.models.formats.TeacherFormat`` loaders: register(fmt)."""


@hookspec
def register_scorers(register):
    """Register evaluation metrics: register(scorer) with .name and .domains."""


@hookspec
def register_methods(register):
    """Register ``didi_seq.distill.method.DistillMethod`` objects: register(method)."""


@hookspec
def register_commands(app):
    """Add typer commands to the ``didi-seq`` app: ``@app.command()`` inside the hook.
    A ``DidiError`` raised by such a command ends as one ``error:`` line, like a built-in's."""


@hookspec
def register_samplers(register):
    """Register ``didi_seq.sampling.contract.Sampler`` objects: register(sampler)."""
