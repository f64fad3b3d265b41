"""The ``didi-seq`` command line: thin wrappers that parse, call the core and print.

Heavy libraries (torch, datasets) are imported inside commands so ``--help`` and
``plugins`` stay fast. A ``DidiError`` becomes one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer

from didi_seq.errors import DidiError

app = typer.Typer(
    name="didi-seq",
    help="Distil masked discrete diffusion teachers into few-step students (DiDi-Instruct).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn DidiError into one clear line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DidiError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; a run with checkpoints can continue with --resume", code=130)

    return wrapper


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise DidiError(f"--{name} must be a positive integer, got {value}")


def domain_or_fail(name: str):
    from didi_seq.plugins import get_domain

    return get_domain(name)


@app.command()
@user_errors
def plugins() -> None:
    """List domains, teacher formats, scorers and the plugins that provide them."""
    from rich.console import Console
    from rich.table import Table

    from didi_seq.plugins import domains, plugin_names, scorers, teacher_formats

    console = Console()
    table = Table(title="domains")
    for col in ("name", "description", "embedded teacher", "embedded student"):
        table.add_column(col)
    for d in domains().values():
        has = lambda p: "yes" if p is not None and Path(p).exists() else "no"  # noqa: E731
        table.add_row(d.name, d.description, has(d.embedded_teacher), has(d.embedded_student))
    console.print(table)
    console.print("teacher formats: " + (", ".join(f.name for f in teacher_formats()) or "none"))
    console.print("scorers: " + (", ".join(s.name for s in scorers()) or "none"))
    console.print("plugins: " + ", ".join(f"{n} ({dist})" for n, dist in plugin_names()))


@app.command()
@user_errors
def pretrain(
    domain: str = typer.Option(..., help="Domain name (see `didi-seq plugins`)."),
    corpus: str | None = typer.Option(None, help="Corpus: local file/dir or datasets name; default: embedded."),
    out: Path = typer.Option(Path("runs/pretrain"), help="Run directory (checkpoints, metrics.jsonl)."),
    steps: int | None = typer.Option(None, help="Optimiser steps (default from the preset)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    preset: str | None = typer.Option(None, help="Model/optimiser preset: tiny | small (default: the domain's)."),
    batch_size: int | None = typer.Option(None, help="Sequences per step."),
    lr: float | None = typer.Option(None, help="Peak learning rate."),
    length: int | None = typer.Option(None, help="Sequence length."),
    ckpt_every: int | None = typer.Option(None, help="Steps between checkpoints."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: all cores)."),
    seed: int = typer.Option(0, help="Seed for initialisation, data order and noise."),
    bf16: bool = typer.Option(True, "--bf16/--no-bf16", help="bf16 autocast for the trunk."),
) -> None:
    """Train a masked-diffusion teacher on a domain's corpus (NELBO)."""
    for name, v in (("length", length), ("threads", threads)):  # the rest is checked by PretrainConfig
        positive(name, v)
    dom = domain_or_fail(domain)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from didi_seq.pretrain import PretrainConfig
    from didi_seq.pretrain import pretrain as run

    cfg = PretrainConfig.from_preset(
        preset or dom.default_preset, steps=steps, batch_size=batch_size, lr=lr, ckpt_every=ckpt_every,
        threads=threads, seed=seed, bf16=bf16, model={"length": length},
    )
    cfg.validate()  # before the progress bar starts
    with Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as progress:
        task = progress.add_task("pretrain", total=cfg.steps, info="")

        def on_step(step: int, total: int, m: dict) -> None:
            info = f"loss {m['loss']:.3f}" + (f" val {m['val_nelbo']:.3f}" if "val_nelbo" in m else "")
            progress.update(task, completed=step, total=total, info=info)

        result = run(dom, out, cfg, corpus=corpus, resume=resume, on_step=on_step)
    typer.echo(f"trained {result.step} steps in {result.wall_clock_s:.0f} s; "
               f"validation NELBO {result.val_nelbo:.4f} nats/token; checkpoint: {result.out_dir}")


@app.command()
@user_errors
def sample(
    domain: str = typer.Option(..., help="Domain name."),
    nfe: int = typer.Option(..., help="Number of denoising steps (network function evaluations)."),
    checkpoint: str | None = typer.Option(
        None, help="'teacher', 'student', a checkpoint path or a hub id (default: the embedded student, "
        "or the embedded teacher while the domain ships no student)."),
    num_samples: int = typer.Option(4, help="Number of sequences."),
    seed: int = typer.Option(0, help="Sampling seed."),
    sampler: str = typer.Option("ancestral", help="ancestral (rgas and native come with later releases)."),
    output: Path | None = typer.Option(None, help="JSONL file to write (default: print samples)."),
    batch_size: int = typer.Option(32, help="Sequences per network call."),
    final: str = typer.Option("ancestral", help="Last step: ancestral draw or greedy arg-max."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Disable the exact p(x0) cache."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Generate samples with the ancestral sampler (fp64 categorical draws)."""
    for name, v in (("num-samples", num_samples), ("batch-size", batch_size), ("threads", threads)):
        positive(name, v)
    if sampler != "ancestral":
        raise DidiError(f"unknown or unavailable sampler {sampler!r}; available: ancestral")
    from didi_seq.sampling import SamplerConfig, sample_batches

    cfg = SamplerConfig(nfe=nfe, final=final, cache=not no_cache)
    cfg.validate()  # before anything is loaded, so bad options fail fast
    dom = domain_or_fail(domain)
    if output is not None:
        from didi_seq.checkpoint import check_parent_dir

        check_parent_dir(output)
    if checkpoint is None:
        has_student = dom.embedded_student is not None and Path(dom.embedded_student).exists()
        checkpoint = "student" if has_student else "teacher"
        if not has_student:
            typer.echo(f"note: domain {dom.name!r} ships no distilled student yet; sampling the embedded teacher",
                       err=True)
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from didi_seq.loading import load_teacher
    from didi_seq.sample_io import write_jsonl

    if threads:
        torch.set_num_threads(threads)
    adapter, tokenizer = load_teacher(checkpoint, dom)
    with Progress(TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("sample", total=nfe * -(-num_samples // batch_size))
        result = sample_batches(adapter, num_samples, cfg, seed=seed, batch_size=batch_size,
                                on_step=lambda: progress.advance(task))
    records = []
    for i, ids in enumerate(result.tokens.tolist()):
        rec = dom.sample_record(ids, tokenizer)
        rec.update({"index": i, "nfe": nfe, "seed": seed, "sampler": sampler, "final": final,
                    "dtype": "float64", "checkpoint": adapter.provenance.get("id")})
        records.append(rec)
    if output is None:
        for rec in records:
            typer.echo(f"--- sample {rec['index']} ---\n{rec[dom.sample_field]}")
    else:
        write_jsonl(output, records)
    typer.echo(f"{num_samples} samples, NFE {nfe}: {result.network_calls} network calls "
               f"({result.rows_evaluated} sequence evaluations), {result.wall_clock_s:.1f} s"
               + (f"; wrote {output}" if output else ""), err=True)


@app.command()
@user_errors
def distill(
    domain: str = typer.Option(..., help="Domain name."),
    teacher: str | None = typer.Option(None, help="Teacher SRC."),
    out: Path | None = typer.Option(None, help="Run directory."),
    steps: int | None = typer.Option(None, help="Distillation steps."),
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """DiDi-Instruct distillation (not available in this release)."""
    raise DidiError("`didi-seq distill` is not available yet in this release of didi-seq (DiDi-Instruct "
                    "distillation is being built); nothing was run")


@app.command()
@user_errors
def evaluate(
    domain: str = typer.Option(..., help="Domain name."),
    samples: Path = typer.Option(..., help="JSONL samples file."),
    judge: str | None = typer.Option(None, help="Judge model."),
    output: Path | None = typer.Option(None, help="Result JSON file."),
) -> None:
    """Generative perplexity and entropy of samples (not available in this release)."""
    raise DidiError("`didi-seq evaluate` is not available yet in this release of didi-seq (the evaluation "
                    "harness is being built); nothing was run")


def _register_plugin_commands() -> None:
    from didi_seq.plugins import get_plugin_manager

    get_plugin_manager().hook.register_commands(app=app)


def main() -> None:
    try:
        _register_plugin_commands()
    except DidiError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
