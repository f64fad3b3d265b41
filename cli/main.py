"""The ``didi-seq`` command line: thin wrappers that parse, call the core and print.

Heavy libraries (torch, datasets) are imported inside commands so ``--help`` and
``plugins`` stay fast. A ``DidiError`` becomes one ``error:`` line and exit code 2.
Results go to stdout, status and progress to stderr (``console.py``).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.rich_utils
from typer.core import TyperCommand

from didi_seq import __version__
from didi_seq.errors import DidiError

from .console import console, literal, printable, progress, set_quiet, status

app = typer.Typer(
    name="didi-seq",
    help="Distil masked discrete diffusion teachers into few-step students (DiDi-Instruct). "
         "Results go to stdout, status and progress to stderr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
HELP_WIDTH = 120  # --help into a file or pipe: wide enough that no option name is cut (rich's default is 80)
if sys.stdout is not None and not sys.stdout.isatty() and typer.rich_utils.MAX_WIDTH is None:
    typer.rich_utils.MAX_WIDTH = HELP_WIDTH


def _flags_show_no_type() -> None:
    """``--help`` shows no ``<bool>`` placeholder beside a flag: a flag takes no value, and typer's
    placeholder made ``--resume <bool>`` read as if it needed one (issue 25)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "hides_flag_types", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag and not self.count else shown(self, ctx)

    display_type_rich.hides_flag_types = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()
DEVICE_HELP = "Where the networks run: auto (a CUDA GPU if there is one, else the CPU) | cpu | cuda | cuda:N"
THREADS_HELP = "torch CPU threads."
THREADS_DEFAULT = "half the cores, at most 4"  # didi_seq.devices.default_threads
RUN = "Run and output"
HARDWARE = "Hardware"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"didi-seq {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="DIDI_SEQ_QUIET",
                               help="No status or progress on stderr (results and errors still print)."),
) -> None:
    from didi_seq.io.hub import stay_offline

    stay_offline()  # again for callers of the app that skip main() (tests, torchrun -m didi_seq_cli.main)
    set_quiet(quiet)
    _warnings_as_status_lines()


def _warnings_as_status_lines() -> None:
    """A ``DidiWarning`` from the core (e.g. records left out of training) prints as one ``warning: …`` status
    line on stderr, like the CLI's own warnings, instead of Python's ``file:line: DidiWarning`` form."""
    import warnings

    from didi_seq.errors import DidiWarning

    shown = getattr(warnings.showwarning, "python_default", warnings.showwarning)

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DidiWarning):
            status(f"warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    showwarning.python_default = shown
    warnings.showwarning = showwarning


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
        except OSError as e:  # the environment, not a bug: disk full, permission denied, a vanished file
            if e.errno is None:
                raise
            fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        except KeyboardInterrupt:
            fail("interrupted; a run with checkpoints can continue with --resume", code=130)

    return wrapper


def check_seed(seed: int) -> None:
    from didi_seq.limits import check_seed as check

    check(seed)


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise DidiError(f"--{name} must be a positive integer, got {value}")


@contextlib.contextmanager
def distributed_run(device: str, sharded: bool = False):
    """(ranks, device) of this process under torchrun (a single process otherwise): under torchrun
    ``cuda`` means this rank's GPU and the group runs over NCCL, else gloo. Leaves the group after a clean run."""
    from didi_seq.devices import resolve_device
    from didi_seq.training.distributed import init_from_env, local_rank, shutdown

    dev = resolve_device(device, local_rank())
    ranks = init_from_env(dev, sharded)
    yield ranks, dev
    shutdown(ranks)  # not after an error: a failed rank's peers may never reach the barrier (torchrun reaps them)


@contextlib.contextmanager
def training_session(name: str, out: Path, device: str, log: str | None, steps: int, describe, info: str = "",
                     shard: str = "ddp"):
    """What pretrain and distill share around a run: --shard, the mirror log checked and --out's parents made
    before anything starts, then the torchrun group, the run lock, the log mirror and a progress bar (rank 0's).
    Yields (ranks, device, on_step(step, total, metrics), on_info(text)); ``describe(metrics)`` is the bar's text."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from didi_seq.training.log import check_logger, training_logger
    from didi_seq.training.run_dir import check_run_dir, exclusive_run
    from didi_seq.training.sharding import check_shard

    sharded = check_shard(shard)
    check_run_dir(out)  # before anything is created: a new, empty or own run directory only
    check_logger(log)
    make_run_parent(out)
    with distributed_run(device, sharded) as (ranks, dev), exclusive_run(out, ranks.is_main), \
            training_logger(log, out, ranks.is_main) as logger, progress(
            TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not ranks.is_main) as bar:
        task = bar.add_task(name, total=steps, info=info)

        def on_step(step: int, total: int, m: dict) -> None:
            bar.update(task, completed=step, total=total, info=describe(m))
            logger.log(step, m)

        yield ranks, dev, on_step, lambda text: bar.update(task, info=text)


# the options pretrain and distill share
TrainingLog = Annotated[str | None, typer.Option(
    "--log", help="Also log training curves to: tensorboard (DIR/tensorboard; pip install -e \".\\[tensorboard]\"). "
    "metrics.jsonl is always written.", show_default="metrics.jsonl only", rich_help_panel=RUN)]
TrainingThreads = Annotated[int | None, typer.Option(envvar="DIDI_SEQ_THREADS", help=THREADS_HELP,
                                                     show_default=THREADS_DEFAULT, rich_help_panel=HARDWARE)]
TrainingDevice = Annotated[str, typer.Option(envvar="DIDI_SEQ_DEVICE", rich_help_panel=HARDWARE,
                                             help=DEVICE_HELP + "; under torchrun each rank takes its LOCAL_RANK's GPU.")]
TrainingShard = Annotated[str, typer.Option(
    help="Under torchrun: ddp (every rank holds whole networks; data parallel) | fsdp (FSDP2 cuts every network, "
    "frozen teacher included, over the ranks: weights, gradients and Adam state take 1/N each; needs ≥ 2 ranks). "
    "A run may resume with another world size, and an fsdp run without --shard.", rich_help_panel=HARDWARE)]


def threads_or_default(threads: int | None) -> int:
    """--threads / DIDI_SEQ_THREADS, else the documented default (oversubscribed cores are far slower than one)."""
    from didi_seq.devices import default_threads
    from didi_seq.limits import check_threads

    return check_threads(threads) if threads is not None else default_threads()


def make_run_parent(out: Path) -> None:
    """``--out a/b/run``: create ``a/b`` as training tools (and save_pretrained) do; the run directory
    itself is made by the run, which refuses to overwrite another run."""
    try:
        Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DidiError(f"cannot create the directory for --out {out}: {e.strerror}") from None


def command_inputs(ctx: typer.Context, *outputs: str) -> list[Path]:
    """Every file or directory this command was given (each option's value and the extra flags a sampler
    or method parses), except its ``outputs`` options. Why one helper over ``ctx``: an input added to a
    command later is protected from being overwritten by --output without anyone remembering to list it."""
    from didi_seq.io.outputs import input_paths

    values = [v for name, v in ctx.params.items() if name not in outputs]
    return input_paths(*values, list(ctx.args))


def domain_or_fail(name: str):
    from didi_seq.registry.plugins import get_domain

    return get_domain(name)


@app.command()
@user_errors
def plugins() -> None:
    """List domains, teacher formats, samplers, scorers, distillation methods and the plugins that provide them."""
    from rich.table import Table

    from didi_seq.registry.plugins import domains, methods, plugin_names, samplers, scorers, teacher_formats

    out = console()
    table = Table(title="domains")
    for col in ("name", "description", "embedded teacher", "embedded student"):
        table.add_column(col)
    for d in domains().values():
        has = lambda p: "yes" if p is not None and Path(p).exists() else "no"  # noqa: E731
        table.add_row(literal(d.name), literal(d.description), has(d.embedded_teacher), has(d.embedded_student))
    out.print(table)
    out.print("teacher formats: " + (", ".join(f.name for f in teacher_formats()) or "none"))
    out.print("samplers: " + (", ".join(f"{n} ({', '.join(s.domains)})" if s.domains else n
                                        for n, s in samplers().items()) or "none"))
    out.print("scorers: " + (", ".join(s.name for s in scorers()) or "none"))
    out.print("distillation methods:" + ("".join(f"\n  {n}: {m.description}" for n, m in sorted(methods().items()))
                                         or " none"), markup=False)  # a plugin's "[…]" is text, not markup
    out.print("plugins: " + ", ".join(f"{n} ({dist})" for n, dist in plugin_names()))


@app.command()
@user_errors
def pretrain(
    ctx: typer.Context,
    domain: str = typer.Option(..., help="Domain name (see `didi-seq plugins`)."),
    corpus: str | None = typer.Option(None, help="Corpus: local file/dir (.txt/.json/.jsonl/.parquet), openwebtext "
                                      "(hub, MDLM split), owt:PATH (local OWT copy), or a datasets name; default: embedded."),
    out: Path = typer.Option(Path("runs/pretrain"), help="Run directory (checkpoints, metrics.jsonl); missing parents "
                             "are created.", rich_help_panel=RUN),
    steps: int | None = typer.Option(None, help="Optimiser steps.", show_default="the preset's: tiny 20, small 2000"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped (with the same "
                                "options; only --steps and --threads may change).",
                                rich_help_panel=RUN),
    preset: str | None = typer.Option(None, help="Model/optimiser preset: tiny | small | a domain's own.",
                                      show_default="the domain's (text: small)"),
    batch_size: int | None = typer.Option(None, help="Sequences per step.", show_default="the preset's: tiny 8, small 32"),
    lr: float | None = typer.Option(None, help="Peak learning rate.", show_default="1e-3"),
    length: int | None = typer.Option(None, help="Sequence length.",
                                      show_default="the preset's, else the domain's default_length"),
    ckpt_every: int | None = typer.Option(None, help="Steps between checkpoints.",
                                          show_default="the preset's: tiny 10, small 100", rich_help_panel=RUN),
    log: TrainingLog = None,
    threads: TrainingThreads = None,
    device: TrainingDevice = "auto",
    shard: TrainingShard = "ddp",
    seed: int = typer.Option(0, help="Seed for initialisation, data order and noise.", rich_help_panel=RUN),
    bf16: bool = typer.Option(True, "--bf16/--no-bf16", help="bf16 autocast for the trunk.", rich_help_panel=HARDWARE),
    tokenizer: str | None = typer.Option(None, help="Tokenizer: the domain's embedded one (default) or, for text, "
                                         "'gpt2' (GPT-2 + mask id 50257, as MDLM) or a tokenizer.json."),
) -> None:
    """Train a masked-diffusion teacher on a domain's corpus (NELBO).

    Cost with the default preset on one CPU core: text 'small' 2000 steps ≈ 50 min (≈ 1.5 s/step),
    protein 'protein-small' 3000 steps ≈ 63 min; --preset tiny takes seconds.
    """
    positive("length", length)  # the rest is checked by PretrainConfig
    check_seed(seed)
    threads = threads_or_default(threads)
    dom = domain_or_fail(domain)

    from didi_seq.training.pretrain import PretrainConfig
    from didi_seq.training.pretrain import pretrain as run

    cfg = PretrainConfig.from_preset(
        preset or dom.default_preset, dom.presets, steps=steps, batch_size=batch_size, lr=lr, ckpt_every=ckpt_every,
        threads=threads, seed=seed, bf16=bf16, model={"length": length}, tokenizer=tokenizer,
    )
    cfg.validate()  # before the progress bar starts
    chosen = {"steps": steps, "batch_size": batch_size, "lr": lr, "length": length, "ckpt_every": ckpt_every,
              "threads": threads, "seed": seed, "bf16": bf16, "tokenizer": tokenizer}
    given = {name: (f"--{name.replace('_', '-')} {value}", value) for name, value in chosen.items()
             if value is not None and ctx.get_parameter_source(name).name != "DEFAULT"}
    if "bf16" in given:
        given["bf16"] = ("--bf16" if bf16 else "--no-bf16", bf16)
    if preset is not None:  # a preset names a model; its other settings are defaults the options above override
        given["model"] = (f"--preset {preset}", cfg.model)
    describe = lambda m: f"loss {m['loss']:.3f}" + (f" val {m['val_nelbo']:.3f}" if "val_nelbo" in m else "")  # noqa: E731
    with training_session("pretrain", out, device, log, cfg.steps, describe, shard=shard) as (ranks, dev, on_step, _):
        result = run(dom, out, cfg, corpus=corpus, resume=resume, on_step=on_step, ranks=ranks, device=dev, given=given)
    if ranks.is_main:
            typer.echo(f"trained {result.step} steps in {result.wall_clock_s:.0f} s; "
                   f"validation NELBO {result.val_nelbo:.4f} nats/token; checkpoint: {result.out_dir}")


class SampleCommand(TyperCommand):
    """``sample``: its help also lists every registered sampler's own options (declared by its config)."""

    def format_help(self, ctx, formatter) -> None:
        super().format_help(ctx, formatter)
        from didi_seq.options import flags_help
        from didi_seq.registry.plugins import samplers

        entries = {n: (s.description + (f" ({', '.join(s.domains)} only)" if s.domains else ""), s.config)
                   for n, s in samplers().items()}
        _append_help(formatter, "Sampler options (only with their --sampler):", flags_help(entries, "--sampler"))


def _append_help(formatter, title: str, text: str) -> None:
    if formatter.getvalue():  # click's plain help
        formatter.write_paragraph()
        formatter.write_text(title)
        formatter.write(text + "\n")
    else:  # typer printed rich help itself
        typer.echo(f"{title}\n{text}")


@app.command(cls=SampleCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def sample(
    ctx: typer.Context,
    domain: str = typer.Option(..., help="Domain name."),
    nfe: int = typer.Option(..., help="Number of denoising steps (network function evaluations)."),
    checkpoint: str | None = typer.Option(
        None, help="'teacher', 'student', a checkpoint path or a hub id (default: the embedded student, "
        "or the embedded teacher while the domain ships no student)."),
    num_samples: int = typer.Option(4, help="Number of sequences."),
    seed: int = typer.Option(0, help="Sampling seed."),
    sampler: str | None = typer.Option(None, help="ancestral | dilated (far-apart positions revealed together) | rgas "
                                       "(reward-guided, needs a DiDi-Instruct student) | a plugin's sampler (protein: native = "
                                       "DPLM's iterative re-masking); see `didi-seq plugins`. Its own options are listed below.",
                                       show_default="the checkpoint's generation_config.json, else ancestral"),
    temperature: float = typer.Option(1.0, help="Divide the x0 prediction's logits by T before every draw "
                                      "(1: untouched; < 1 sharper, > 1 flatter); must be finite and > 0."),
    lengths: str | None = typer.Option(None, help="Variable-length domains (protein): one length, a comma list (split "
                                       "evenly), or a FASTA file to fit; default: the length model fitted on the domain "
                                       "corpus. Fixed-length domains (text, LLaDA/Dream): one integer N, the positions to "
                                       "generate; default: the model's whole row. With --prompt: the answer's length."),
    prompt: str | None = typer.Option(None, metavar="TEXT|FILE", help="Generate answers to a prompt: its tokens stay fixed "
                                      "after BOS and only the rest of the row is generated; each sample is the prompt "
                                      "followed by its answer. A path to an existing file means its content (one final "
                                      "line break dropped), anything else the text itself."),
    output: Path | None = typer.Option(None, help="JSONL file to write; '-': JSONL on stdout (protein: no FASTA "
                                       "then). Default: print the samples as text."),
    batch_size: int = typer.Option(32, help="Sequences per network call."),
    threads: int | None = typer.Option(None, envvar="DIDI_SEQ_THREADS", help=THREADS_HELP, show_default=THREADS_DEFAULT,
                                       rich_help_panel=HARDWARE),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", help=DEVICE_HELP + ".", rich_help_panel=HARDWARE),
    ema: bool = typer.Option(True, "--ema/--raw", help="Lightning .ckpt: EMA weights (default, as the papers evaluate) or raw."),
) -> None:
    """Generate samples with a registered sampler: ancestral (fp64 categorical draws, exact cache), dilated, RGAS, or a
    plugin's; without --sampler, the one the checkpoint's generation_config.json names (the embedded text student: dilated).

    A seed fixes the samples: every run with the default --seed 0 gives identical ones; pass another seed for new ones.
    """
    positive("batch-size", batch_size)  # its memory bound is checked by generate, which knows the model
    check_seed(seed)
    threads = threads_or_default(threads)
    dom = domain_or_fail(domain)
    from didi_seq.options import parse_flags
    from didi_seq.registry.plugins import get_sampler, samplers
    from didi_seq.sampling.generate import check_num_samples, default_sampler, generate, load_model, sampler_config

    check_num_samples(num_samples)
    defaults = {}
    if sampler is None:  # the checkpoint's own choice (generation_config.json), read before its weights
        sampler, defaults = default_sampler(dom, checkpoint)
    get_sampler(sampler, dom.name)  # an unknown sampler is named before its flags are
    known = {n: s.config for n, s in samplers().items()}
    options = {**defaults, **{name: value for name, (_, value)
                              in parse_flags(sampler, known, ctx.args, "--sampler", "sample").items()}}
    cfg = sampler_config(sampler, dom.name, nfe=nfe, temperature=temperature, **options)  # bad options fail before loading
    if lengths is not None and dom.length_model is None:
        from didi_seq.sampling.ancestral import answer_length

        answer_length(dom.name, lengths)  # a list or a bad N fails before loading too (the row's bound needs the model)
    if prompt is not None:
        from didi_seq.sampling.prompt import read_prompt

        prompt = read_prompt(prompt)  # a missing or unreadable prompt file fails before loading too
    to_stdout = output is not None and str(output) == "-"
    outputs = []
    if output is not None and not to_stdout:  # checked before any work: the JSONL and the domain's sibling files (FASTA)
        from didi_seq.io.outputs import plan_outputs

        outputs = plan_outputs(output, dom.sample_files, command_inputs(ctx, "output"))
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from didi_seq.devices import resolve_device
    from didi_seq.io.samples import jsonl_bytes, jsonl_text

    torch.set_num_threads(threads)
    model = load_model(dom, checkpoint, device=resolve_device(device), use_ema=ema,
                       on_note=lambda note: status(f"note: {note}"))
    with progress(TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("sample", total=None)
        out = generate(model, cfg, sampler=sampler, num_samples=num_samples, seed=seed, lengths=lengths,
                       batch_size=batch_size, on_step=lambda done, total: bar.update(task, completed=done, total=total),
                       prompt=prompt)
    result, records = out.result, out.records
    written = []
    if output is None:
        for rec in records:
            typer.echo(f"--- sample {rec['index']} ---\n{printable(rec['decoded'])}")
    elif to_stdout:  # JSONL for a pipe; a domain's sibling files (protein FASTA) need a file name, so none
        sys.stdout.write(jsonl_text(records))
        sys.stdout.flush()
    else:
        from didi_seq.io.outputs import write_all

        write_all(zip(outputs, [jsonl_bytes(records), *(render(records) for render in dom.sample_files.values())], strict=True))
        written = outputs
    aux = f", {result.aux_calls} discriminator calls" if result.aux_calls else ""
    status(f"{num_samples} samples, NFE {nfe}: {result.network_calls} network calls "
           f"({result.rows_evaluated} sequence evaluations{aux}), {result.wall_clock_s:.1f} s"
           + (f"; wrote {', '.join(map(str, written))}" if written else ""))


class DistillCommand(TyperCommand):
    """``distill``: its help also lists every registered method's own options (parsed by the method)."""

    def format_help(self, ctx, formatter) -> None:
        super().format_help(ctx, formatter)
        from didi_seq.options import flags_help
        from didi_seq.registry.plugins import methods

        entries = {n: (m.description, m.config) for n, m in methods().items()}
        _append_help(formatter, "Method options (only with their --method):", flags_help(entries, "--method"))


@app.command(cls=DistillCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def distill(
    ctx: typer.Context,
    domain: str = typer.Option(..., help="Domain name."),
    method: str = typer.Option("didi-instruct", help="Distillation method (see `didi-seq plugins`); its own options "
                               "are listed below."),
    teacher: str | None = typer.Option(None, help="Teacher SRC: 'teacher' (embedded, default), a checkpoint path or a hub id."),
    out: Path = typer.Option(Path("runs/distill"), help="Run directory (checkpoints, metrics.jsonl); missing parents "
                             "are created.", rich_help_panel=RUN),
    steps: int | None = typer.Option(None, help="Distillation iterations (DiDi-Instruct text: ≈ 5 s each on one core).",
                                     show_default="per method; didi-instruct: 400"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped (with the same "
                                "options; only --steps and --threads may change).", rich_help_panel=RUN),
    corpus: str | None = typer.Option(None, help="Real data for the method (DiDi-Instruct: the discriminator's positive "
                                      "class): same forms as pretrain --corpus (default: embedded)."),
    length: int | None = typer.Option(None, help="Tokens per training row (corpus rows, student rollouts), at most the "
                                      "teacher's maximum length; e.g. 1024 for LLaDA's 4096-token window.",
                                      show_default="the teacher's maximum length"),
    allow_no_student_steps: bool = typer.Option(False, "--allow-no-student-steps", help="Run (with a warning) even "
                                                "when --steps ≤ --disc-warmup-steps, i.e. the student never moves."),
    ckpt_every: int | None = typer.Option(None, help="Iterations between checkpoints.", show_default="the method's",
                                          rich_help_panel=RUN),
    log: TrainingLog = None,
    threads: TrainingThreads = None,
    device: TrainingDevice = "auto",
    shard: TrainingShard = "ddp",
    seed: int | None = typer.Option(None, help="Seed for initialisation, data order and sampling.",
                                    show_default="0", rich_help_panel=RUN),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop with a checkpoint once the run has "
                                             "trained this long (wall-clock, counted over resumes): equal-compute "
                                             "comparisons of methods.", show_default="no limit", rich_help_panel=RUN),
    raw: bool = typer.Option(False, "--raw", help="Lightning .ckpt teacher (MDLM/DUO): load its raw weights instead of "
                             "its EMA weights (the default, as the papers evaluate). Not to be confused with --ema DECAY, "
                             "the student's EMA decay of --method sdtt / mmd."),
) -> None:
    """Distil the teacher into a few-step student with a registered method (default: DiDi-Instruct).

    Cost with the DiDi-Instruct defaults (400 iterations) on one CPU core: ≈ 33 min for text
    (≈ 5 s/iteration), ≈ 46 min for protein; its student moves only after the discriminator-only warm-up.
    """
    threads = threads_or_default(threads)  # the rest is checked by the method's config
    if seed is not None:
        check_seed(seed)
    dom = domain_or_fail(domain)

    from didi_seq.distill.run import check_max_minutes, check_student_steps, shortfall
    from didi_seq.distill.run import distill as run
    from didi_seq.options import parse_flags
    from didi_seq.registry.plugins import get_method, methods

    chosen = get_method(method)
    given = parse_flags(chosen.name, {n: m.config for n, m in methods().items()}, ctx.args, "--method", "distill")
    for name, value in (("steps", steps), ("ckpt_every", ckpt_every), ("seed", seed), ("threads", threads)):
        if value is not None:
            given[name] = (f"--{name.replace('_', '-')} {value}", value)
    cfg = chosen.config(**{name: value for name, (_, value) in given.items()})
    cfg.validate()  # before anything loads
    check_max_minutes(max_minutes)
    for warning in ([] if resume else [check_student_steps(cfg, allow=allow_no_student_steps), shortfall(cfg, cfg.steps)]):
        if warning:  # resume: the saved config's were checked when the run started
            status(f"warning: {warning}")
    with training_session("distill", out, device, log, cfg.steps, distill_progress, info="loading", shard=shard) as \
            (ranks, dev, on_step, on_prepare):
        result = run(dom, out, chosen, cfg, teacher=teacher, corpus=corpus, resume=resume, on_step=on_step,
                     on_prepare=on_prepare, ranks=ranks, teacher_options={"use_ema": not raw},
                     device=dev, given=given, max_minutes=max_minutes, length=length)
    if ranks.is_main:
        budget = " (the --max-minutes budget is spent)" if result.step < cfg.steps else ""
        stopped_short = shortfall(cfg, result.step, result.last) if budget else None
        if stopped_short:
            status(f"warning: {stopped_short}")
        typer.echo(f"distilled {result.step} iterations in {result.wall_clock_s:.0f} s{budget}; student: {result.out_dir} "
                   f"(sample it with --checkpoint {result.out_dir})")


def distill_progress(m: dict) -> str:
    """The progress bar's view of one distillation iteration, from what the method logs: DiDi-Instruct's
    discriminator accuracy (and, during its warm-up, that the student is still waiting), then the
    student's loss and whichever of reward, KL, entropy and round the method reports."""
    parts = [f"D acc {m['disc_acc']:.2f}"] if "disc_acc" in m else []
    if "loss" not in m:
        return " ".join(parts + ["(discriminator warm-up: student not stepping yet)"] if parts else [])
    parts.append(f"student loss {m['loss']:+.3f}")
    for key, label, fmt in (("reward", "reward", "+.2f"), ("kl", "KL", ".2e"), ("entropy", "H", ".2f"), ("round", "round", ".0f")):
        if key in m:
            parts.append(f"{label} {m[key]:{fmt}}")
    return " ".join(parts)


@app.command()
@user_errors
def plan(
    teacher: str = typer.Option(..., help="The teacher's config.json, or a checkpoint (run) directory holding one: "
                                "didi-seq, Hugging Face (hidden_size, …) or LLaDA (d_model, …) keys. No weights are read."),
    method: str = typer.Option("didi-instruct", help="didi-instruct | sdtt | mmd (its defaults fill the options not given)."),
    gpus: int = typer.Option(..., help="GPUs (torchrun ranks)."),
    gpu_mem: float = typer.Option(..., "--gpu-mem", help="Memory of one GPU, GiB (e.g. 80 for an H100, 141 for an H200)."),
    batch_size: int | None = typer.Option(None, help="As distill's --batch-size (over all GPUs).",
                                          show_default="the method's"),
    group_size: int | None = typer.Option(None, help="DiDi-Instruct: rows per target row.", show_default="the method's"),
    length: int | None = typer.Option(None, help="Sequence length.", show_default="the config's maximum"),
    shard: str = typer.Option("ddp", help="ddp (whole networks on every GPU) | fsdp (each state / --gpus)."),
    dtype: str = typer.Option("bf16", help="bf16 (frozen weights 2 B, trained: bf16 + fp32 master) | fp32 (4 B; "
                              "what didi-seq's own fp32 checkpoints train in)."),
    steps: int | None = typer.Option(None, help="Iterations, for the GPU-hours.", show_default="the method's"),
    tflops: float = typer.Option(400.0, help="Sustained bf16 TFLOP/s per GPU assumed for the GPU-hours (≈ 40 % of an "
                                 "H100/H200's 989 dense peak)."),
    json_out: bool = typer.Option(False, "--json", help="The plan as JSON on stdout instead of a table."),
) -> None:
    """Whether a distillation run fits, and each GPU's memory: weights, gradients, Adam state, activations.

    Computed from the teacher's config.json alone (didi_seq/training/plan.py states every formula and its source).
    """
    import json
    import math

    from rich.table import Table

    from didi_seq.registry.plugins import get_method
    from didi_seq.training.plan import GIB, METHODS, Setup, gpu_hours, read_teacher_shape
    from didi_seq.training.plan import plan as make_plan

    if method not in METHODS:
        raise DidiError(f"plan knows the memory of --method {', '.join(METHODS)}; not {method!r}")
    for name, value in (("batch-size", batch_size), ("group-size", group_size), ("length", length), ("steps", steps)):
        positive(name, value)
    if not (math.isfinite(tflops) and tflops > 0):
        raise DidiError(f"--tflops must be a positive number, got {tflops}")
    options = get_method(method).config()
    batch = batch_size or options.batch_size
    rows = batch * (group_size or getattr(options, "group_size", 1))
    shape = read_teacher_shape(teacher)
    length = length or shape.max_length
    if length is None:
        raise DidiError(f"{teacher}: its config names no maximum length; pass --length")
    result = make_plan(shape, Setup(method, gpus, gpu_mem, rows, length, shard, dtype, options))
    steps = steps or options.steps
    hours = gpu_hours(result.flops_per_step, steps, tflops)
    if json_out:
        typer.echo(json.dumps({"teacher": {"kind": shape.kind, "params": shape.params, "layers": shape.layers,
                                           "hidden": shape.hidden}, "method": method, "gpus": gpus, "shard": shard,
                               "dtype": dtype, "rows_per_step": rows, "length": length, **result.to_dict(),
                               "steps": steps, "tflops_assumed": tflops, "gpu_hours": hours}, indent=2))
        return
    out = console()
    table = Table(title=f"{method} on a {shape.kind} teacher of {shape.params / 1e9:.2f} B params "
                        f"({shape.layers} layers, hidden {shape.hidden}); {gpus} GPUs, --shard {shard}, {dtype}; "
                        f"{rows} rows × {length} tokens per step", title_justify="left")
    for col, justify in (("per GPU", "left"), ("GiB", "right"), ("how", "left")):
        table.add_column(col, justify=justify)
    for row in result.rows:
        table.add_row(literal(row.what), f"{row.bytes / GIB:.2f}", literal(row.how))
    table.add_row("total", f"{result.per_rank / GIB:.2f}", f"of {result.usable / GIB:.1f} GiB usable", style="bold")
    out.print(table)
    verdict = "fits" if result.fits else "does NOT fit"
    out.print(f"{verdict}: {result.per_rank / GIB:.1f} GiB per GPU of {result.usable / GIB:.1f} usable "
              f"({gpu_mem:g} GiB GPUs)", markup=False)
    out.print(f"compute: {result.flops_per_step / 1e15:.2f} PFLOP per step; at {tflops:g} TFLOP/s per GPU "
              f"{result.flops_per_step / (gpus * tflops * 1e12):.2f} s/step on {gpus} GPUs; {steps} steps ≈ "
              f"{hours:.1f} GPU-hours (an estimate)", markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)


@app.command()
@user_errors
def evaluate(
    ctx: typer.Context,
    domain: str = typer.Option(..., help="Domain name."),
    samples: list[Path] = typer.Option(..., help="JSONL samples file (repeat the option to pool several files/seeds)."),
    judge: str | None = typer.Option(None, help="Gen PPL judge: smollm2-135m (offline default), gpt2-large or any hub "
                                     "id in the local cache, a model directory or a .gguf file."),
    output: Path | None = typer.Option(None, help="Write the result record (JSON) here; '-': on stdout (the table then "
                                       "goes to stderr)."),
    metrics: str | None = typer.Option(None, help="Comma-separated metric names (default: all the domain's scorers)."),
    reference_samples: int = typer.Option(64, help="Validation blocks scored as the real-data reference (0: none)."),
    reference: list[Path] | None = typer.Option(None, help="Real-data reference: a JSONL file of this domain's records "
                                                "(repeatable), instead of the corpus's validation blocks."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples for the confidence intervals (default: each "
                                         "metric's own, 1000 for Gen PPL, 200 for MAUVE; 0: none)."),
    mauve_clusters: int | None = typer.Option(None, help="Text: MAUVE k-means clusters (default max(2, round(n/10)))."),
    judge_batch_size: int = typer.Option(8, help="Texts per judge forward pass."),
    judge_context: int = typer.Option(1024, help="Truncate re-tokenised samples to this many judge tokens."),
    threads: int | None = typer.Option(None, envvar="DIDI_SEQ_THREADS", help=THREADS_HELP, show_default=THREADS_DEFAULT,
                                       rich_help_panel=HARDWARE),
    plddt_model: str | None = typer.Option(None, help="Protein: ESMFold for pLDDT — a transformers EsmForProteinFolding "
                                           "directory, a cached hub id (facebook/esmfold_v1), or fair-esm[:TORCH_HUB_DIR]. "
                                           "The reference sequences are folded too: on a CPU keep --reference-samples small."),
    pdb_dir: Path | None = typer.Option(None, help="Protein, with --plddt-model: write one PDB file per sample here."),
    fold_batch_size: int = typer.Option(4, help="Protein: sequences per ESMFold call."),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", help=DEVICE_HELP + " (for the judge / ESMFold).",
                               rich_help_panel=HARDWARE),
) -> None:
    """Score samples: Gen PPL under a judge (text), entropy, and a real-data reference line."""
    from didi_seq.limits import check_bootstrap, check_int, check_rows

    check_int("--judge-context", judge_context, high=1 << 20)  # far beyond any judge's context window
    # a judge's logits: context × vocabulary (32k at least for a real LM) × 4 bytes per text
    check_rows("--judge-batch-size", judge_batch_size, judge_context * 32_000 * 4, "the judge's logits")
    if mauve_clusters is not None:
        check_int("--mauve-clusters", mauve_clusters, high=1 << 20)
    check_bootstrap(bootstrap)
    threads = threads_or_default(threads)
    check_int("--fold-batch-size", fold_batch_size, high=4096)  # ESMFold's memory grows with L² per sequence
    if pdb_dir is not None and (plddt_model is None or not pdb_dir.is_dir()):
        raise DidiError(f"--pdb-dir {pdb_dir} needs --plddt-model and an existing directory")
    if reference_samples < 0:
        raise DidiError(f"--reference-samples must be 0 or positive, got {reference_samples}")
    dom = domain_or_fail(domain)
    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout:
        from didi_seq.io.outputs import check_output

        output = check_output(output, command_inputs(ctx, "output", "pdb_dir"))
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from didi_seq.evaluation.harness import describe_files, load_samples, write_result
    from didi_seq.evaluation.harness import evaluate as run

    records = load_samples(samples, dom)  # bad files fail before any model loads
    if reference:
        load_samples(reference, dom)  # checked before any model loads, like the samples
    from didi_seq.devices import resolve_device

    dev = resolve_device(device)
    import torch

    torch.set_num_threads(threads)
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        tasks: dict = {}
        # at once: the scorers' own bars appear only after their models load (the default judge: about a minute)
        loading = bar.add_task(f"evaluate {len(records)} samples: loading the scorers' models", total=None)

        def on_progress(name: str, done: int, total: int) -> None:
            if loading in bar.task_ids:
                bar.remove_task(loading)
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        record = run(dom, records, judge=judge, metrics=metrics.split(",") if metrics else None,
                     reference_samples=reference_samples, reference=reference or None, bootstrap=bootstrap, on_progress=on_progress,
                     options={"judge_batch_size": judge_batch_size, "judge_context": judge_context,
                              "plddt_model": plddt_model, "pdb_dir": pdb_dir, "fold_batch_size": fold_batch_size,
                              "mauve_clusters": mauve_clusters, "device": str(dev)})
    record["samples_files"] = describe_files(samples)
    if to_stdout:
        import json

        _print_record(console(stderr=True), record)
        typer.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    if output is not None:
        write_result(output, record)
    _print_record(console(), record)
    if output is not None:
        status(f"wrote {output}")


def _print_record(console, record: dict) -> None:
    from rich.table import Table

    from didi_seq.registry.plugins import scorers

    # every value comes from the samples files (untrusted): printed literally, never as markup
    table = Table(title=literal(f"{record['domain']}: {record['num_samples']} samples, seeds {record['seeds']}, "
                                f"NFE {record['nfe']}, {record['sampler']}, {record['checkpoint']}"))
    for col in ("metric", "mean ± std over seeds", "pooled", "95% CI (bootstrap)", "real data"):
        table.add_column(col)
    ref = (record.get("reference") or {}).get("values", {})
    for name, m in record["metrics"].items():
        spread = f" ± {m['std']:.3f}" if m["std"] is not None else ""
        ci = f"{m['ci']['low']:.3f} – {m['ci']['high']:.3f}" if m.get("ci") else "-"
        flag = " (unreliable, see below)" if m.get("caveat") else ""
        table.add_row(literal(f"{name} {m['unit']}".strip()) + flag, f"{m['mean']:.3f}{spread}", f"{m['pooled']:.3f}", ci,
                      f"{ref[name]:.3f}" if name in ref else "-")
    console.print(table)
    for name, m in record["metrics"].items():
        if m.get("caveat"):
            console.print(f"warning: {name} is {m['caveat']}")
    reporters = {s.name: s.report for s in scorers(record["domain"]) if s.report}
    lines = [line for name, info in record["scorers"].items() if name in reporters for line in reporters[name](info)]
    for line in dict.fromkeys(lines):  # scorers sharing a judge or a fold report it once
        console.print(literal(line))
    if record.get("skipped_metrics"):
        console.print(literal(f"not computed (need options): {', '.join(record['skipped_metrics'])}"))
    cost = record["sampling"]
    if cost.get("known"):
        console.print(f"sampling: {cost['network_calls_per_sample']:.1f} network calls and "
                      f"{cost['sequence_evaluations_per_sample']:.1f} sequence evaluations per sample, "
                      f"{cost['s_per_sample']:.3f} s/sample")


@app.command("new-plugin")
@user_errors
def new_plugin(
    name: str = typer.Argument(..., help="Domain name (lower-case letters, digits, '_'); the package is didi_seq_NAME."),
    alphabet: str = typer.Option("ACGT", help="The domain's characters, one token each."),
    out: Path | None = typer.Option(None, help="Directory to create.", show_default="./didi-seq-NAME"),
) -> None:
    """Write a working domain-plugin package (character tokenizer, corpus, entry point, a test) to start from."""
    from .new_plugin import write_skeleton

    target = out or Path(f"didi-seq-{name.replace('_', '-')}")
    files = write_skeleton(name, alphabet, target)
    typer.echo(target)
    status(f"wrote {len(files)} files; next: pip install -e '{target}[test]' && python -m pytest -q {target}/tests")


def _register_plugins() -> None:
    """Load every plugin, add its commands, and warn once (stderr) about each one that is broken: the
    other plugins and the built-in domains keep working."""
    from didi_seq.registry.plugins import check_plugins, register_commands

    register_commands(app)
    for line in check_plugins():
        typer.echo(f"warning: {line}", err=True)


def main() -> None:
    if sys.stdout is None:  # started with stdout closed (`>&-`): results would have nowhere to go
        print("error: stdout is closed; redirect it to a file or /dev/null instead (`> out.txt`)", file=sys.stderr)
        sys.exit(2)
    from didi_seq.io.hub import stay_offline

    stay_offline()  # before any plugin imports a hub library
    try:
        _register_plugins()
        app()  # a plugin's command that raises DidiError ends like a built-in one: one error line
    except DidiError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
