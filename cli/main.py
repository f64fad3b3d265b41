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

import typer
import typer.rich_utils

from didi_seq import __version__
from didi_seq.distill.config import DistillConfig  # light (no torch): its defaults fill --help
from didi_seq.errors import DidiError

from .console import console, progress, set_quiet, status

app = typer.Typer(
    name="didi-seq",
    help="Distil masked discrete diffusion teachers into few-step students (DiDi-Instruct). "
         "Results go to stdout, status and progress to stderr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
HELP_WIDTH = 120  # --help into a file or pipe: wide enough that no option name is cut (rich's default is 80)
if not sys.stdout.isatty() and typer.rich_utils.MAX_WIDTH is None:
    typer.rich_utils.MAX_WIDTH = HELP_WIDTH
DEVICE_HELP = "Where the networks run: auto (a CUDA GPU if there is one, else the CPU) | cpu | cuda | cuda:N"
THREADS_HELP = "torch CPU threads."
THREADS_DEFAULT = "half the cores, at most 4"  # didi_seq.devices.default_threads
RUN = "Run and output"
HARDWARE = "Hardware"
METHOD = "DiDi-Instruct method (each default names its source in didi_seq/distill/config.py)"
SWITCHES = "Ablation switches (on: the paper's full method)"  # own panel: their long names need the width


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
    set_quiet(quiet)


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


@contextlib.contextmanager
def distributed_run(device: str):
    """(ranks, device) of this process under torchrun (a single process otherwise): under torchrun
    ``cuda`` means this rank's GPU and the group runs over NCCL, else gloo. Leaves the group on exit."""
    from didi_seq.devices import resolve_device
    from didi_seq.distributed import init_from_env, local_rank, shutdown

    dev = resolve_device(device, local_rank())
    ranks = init_from_env(dev)
    try:
        yield ranks, dev
    finally:
        shutdown(ranks)


def threads_or_default(threads: int | None) -> int:
    """--threads / DIDI_SEQ_THREADS, else the documented default (oversubscribed cores are far slower than one)."""
    from didi_seq.devices import default_threads

    positive("threads", threads)
    return threads or default_threads()


def make_run_parent(out: Path) -> None:
    """``--out a/b/run``: create ``a/b`` as training tools (and save_pretrained) do; the run directory
    itself is made by the run, which refuses to overwrite another run."""
    try:
        Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DidiError(f"cannot create the directory for --out {out}: {e.strerror}") from None


def domain_or_fail(name: str):
    from didi_seq.plugins import get_domain

    return get_domain(name)


@app.command()
@user_errors
def plugins() -> None:
    """List domains, teacher formats, samplers, scorers and the plugins that provide them."""
    from rich.table import Table

    from didi_seq.plugins import domains, plugin_names, samplers, scorers, teacher_formats

    out = console()
    table = Table(title="domains")
    for col in ("name", "description", "embedded teacher", "embedded student"):
        table.add_column(col)
    for d in domains().values():
        has = lambda p: "yes" if p is not None and Path(p).exists() else "no"  # noqa: E731
        table.add_row(d.name, d.description, has(d.embedded_teacher), has(d.embedded_student))
    out.print(table)
    out.print("teacher formats: " + (", ".join(f.name for f in teacher_formats()) or "none"))
    out.print("samplers: " + (", ".join(f"{n} ({', '.join(s.domains)})" if s.domains else n
                                        for n, s in samplers().items()) or "none"))
    out.print("scorers: " + (", ".join(s.name for s in scorers()) or "none"))
    out.print("plugins: " + ", ".join(f"{n} ({dist})" for n, dist in plugin_names()))


@app.command()
@user_errors
def pretrain(
    domain: str = typer.Option(..., help="Domain name (see `didi-seq plugins`)."),
    corpus: str | None = typer.Option(None, help="Corpus: local file/dir (.txt/.json/.jsonl/.parquet), openwebtext "
                                      "(hub, MDLM split), owt:PATH (local OWT copy), or a datasets name; default: embedded."),
    out: Path = typer.Option(Path("runs/pretrain"), help="Run directory (checkpoints, metrics.jsonl); missing parents "
                             "are created.", rich_help_panel=RUN),
    steps: int | None = typer.Option(None, help="Optimiser steps.", show_default="the preset's: tiny 20, small 2000"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped.",
                                rich_help_panel=RUN),
    preset: str | None = typer.Option(None, help="Model/optimiser preset: tiny | small | a domain's own.",
                                      show_default="the domain's (text: small)"),
    batch_size: int | None = typer.Option(None, help="Sequences per step.", show_default="the preset's: tiny 8, small 32"),
    lr: float | None = typer.Option(None, help="Peak learning rate.", show_default="1e-3"),
    length: int | None = typer.Option(None, help="Sequence length.",
                                      show_default="the preset's, else the domain's default_length"),
    ckpt_every: int | None = typer.Option(None, help="Steps between checkpoints.",
                                          show_default="the preset's: tiny 10, small 100", rich_help_panel=RUN),
    log: str | None = typer.Option(None, "--log", help="Also log training curves to: tensorboard (DIR/tensorboard; "
                                   "pip install 'didi-seq\\[tensorboard]'). metrics.jsonl is always written.",
                                   show_default="metrics.jsonl only", rich_help_panel=RUN),
    threads: int | None = typer.Option(None, envvar="DIDI_SEQ_THREADS", help=THREADS_HELP, show_default=THREADS_DEFAULT,
                                       rich_help_panel=HARDWARE),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", rich_help_panel=HARDWARE,
                               help=DEVICE_HELP + "; under torchrun each rank takes its LOCAL_RANK's GPU."),
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
    threads = threads_or_default(threads)
    dom = domain_or_fail(domain)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from didi_seq.pretrain import PretrainConfig
    from didi_seq.pretrain import pretrain as run
    from didi_seq.training_log import check_logger, training_logger

    cfg = PretrainConfig.from_preset(
        preset or dom.default_preset, dom.presets, steps=steps, batch_size=batch_size, lr=lr, ckpt_every=ckpt_every,
        threads=threads, seed=seed, bf16=bf16, model={"length": length}, tokenizer=tokenizer,
    )
    cfg.validate()  # before the progress bar starts
    check_logger(log)
    make_run_parent(out)
    with distributed_run(device) as (ranks, dev), training_logger(log, out, ranks.is_main) as logger, progress(
            TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=False, disable=not ranks.is_main) as bar:
        task = bar.add_task("pretrain", total=cfg.steps, info="")

        def on_step(step: int, total: int, m: dict) -> None:
            info = f"loss {m['loss']:.3f}" + (f" val {m['val_nelbo']:.3f}" if "val_nelbo" in m else "")
            bar.update(task, completed=step, total=total, info=info)
            logger.log(step, m)

        result = run(dom, out, cfg, corpus=corpus, resume=resume, on_step=on_step, ranks=ranks, device=dev)
    if ranks.is_main:
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
    sampler: str = typer.Option("ancestral", help="ancestral | rgas (reward-guided, needs a DiDi-Instruct student) | "
                                "a plugin's sampler (protein: native = DPLM's iterative re-masking); see `didi-seq plugins`."),
    temperature: float = typer.Option(1.0, help="Divide the x0 prediction's logits by T before every draw "
                                      "(1: untouched; < 1 sharper, > 1 flatter); must be finite and > 0."),
    lengths: str | None = typer.Option(None, help="Variable-length domains: one length, a comma list (split evenly), "
                                       "or a FASTA file to fit; default: the length model fitted on the domain corpus."),
    output: Path | None = typer.Option(None, help="JSONL file to write; '-': JSONL on stdout (protein: no FASTA "
                                       "then). Default: print the samples as text."),
    batch_size: int = typer.Option(32, help="Sequences per network call."),
    final: str = typer.Option("ancestral", help="Last step: ancestral draw or greedy arg-max."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Disable the exact p(x0) cache."),
    threads: int | None = typer.Option(None, envvar="DIDI_SEQ_THREADS", help=THREADS_HELP, show_default=THREADS_DEFAULT,
                                       rich_help_panel=HARDWARE),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", help=DEVICE_HELP + ".", rich_help_panel=HARDWARE),
    guidance_start: float = typer.Option(0.2, help="rgas: tilting scale h at the first step."),
    guidance_end: float = typer.Option(1.0, help="rgas: tilting scale h at the last tilting step."),
    rerank_ratio: float = typer.Option(0.5, help="rgas: fraction of (late) steps that re-rank candidates."),
    candidates: int = typer.Option(4, help="rgas: candidates M per re-ranking step."),
    teacher: str | None = typer.Option(None, help="rgas: the teacher the discriminator was trained on (default: found by hash)."),
    ema: bool = typer.Option(True, "--ema/--raw", help="Lightning .ckpt: EMA weights (default, as the papers evaluate) or raw."),
) -> None:
    """Generate samples with a registered sampler: ancestral (fp64 categorical draws, exact cache), RGAS, or a plugin's."""
    for name, v in (("num-samples", num_samples), ("batch-size", batch_size)):
        positive(name, v)
    threads = threads_or_default(threads)
    dom = domain_or_fail(domain)
    from didi_seq.generate import generate, load_model, sampler_config

    cfg = sampler_config(sampler, dom.name, nfe=nfe, temperature=temperature, final=final, cache=not no_cache,
                         guidance_start=guidance_start, guidance_end=guidance_end, rerank_ratio=rerank_ratio,
                         candidates=candidates, teacher=teacher)  # before anything is loaded: bad options fail fast
    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout:
        from didi_seq.checkpoint import check_parent_dir

        check_parent_dir(output)
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from didi_seq.devices import resolve_device
    from didi_seq.sample_io import jsonl_text, write_jsonl

    torch.set_num_threads(threads)
    model = load_model(dom, checkpoint, device=resolve_device(device), use_ema=ema,
                       on_note=lambda note: status(f"note: {note}"))
    with progress(TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("sample", total=None)
        out = generate(model, cfg, sampler=sampler, num_samples=num_samples, seed=seed, lengths=lengths,
                       batch_size=batch_size, on_step=lambda done, total: bar.update(task, completed=done, total=total))
    result, records = out.result, out.records
    written = []
    if output is None:
        for rec in records:
            typer.echo(f"--- sample {rec['index']} ---\n{rec[dom.sample_field]}")
    elif to_stdout:  # JSONL for a pipe; a domain's sibling files (protein FASTA) need a file name, so none
        sys.stdout.write(jsonl_text(records))
        sys.stdout.flush()
    else:
        write_jsonl(output, records)
        written = [output, *(dom.write_samples(output, records) if dom.write_samples else [])]
    aux = f", {result.aux_calls} discriminator calls" if result.aux_calls else ""
    status(f"{num_samples} samples, NFE {nfe}: {result.network_calls} network calls "
           f"({result.rows_evaluated} sequence evaluations{aux}), {result.wall_clock_s:.1f} s"
           + (f"; wrote {', '.join(map(str, written))}" if written else ""))


@app.command()
@user_errors
def distill(
    domain: str = typer.Option(..., help="Domain name."),
    teacher: str | None = typer.Option(None, help="Teacher SRC: 'teacher' (embedded, default), a checkpoint path or a hub id."),
    out: Path = typer.Option(Path("runs/distill"), help="Run directory (checkpoints, metrics.jsonl); missing parents "
                             "are created.", rich_help_panel=RUN),
    steps: int | None = typer.Option(None, help="Distillation iterations (≈ 5 s each for the text default on one core).",
                                     show_default=str(DistillConfig.steps)),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped.",
                                rich_help_panel=RUN),
    corpus: str | None = typer.Option(None, help="Real data for the discriminator's positive class: same forms as "
                                      "pretrain --corpus (default: embedded)."),
    batch_size: int | None = typer.Option(None, help="Target rows per iteration (each repeated group-size times).",
                                          show_default=str(DistillConfig.batch_size), rich_help_panel=METHOD),
    group_size: int | None = typer.Option(None, help="G: student samples per target row; advantages are standardised "
                                          "per group.", show_default=str(DistillConfig.group_size), rich_help_panel=METHOD),
    student_lr: float | None = typer.Option(None, help="Student peak learning rate.",
                                            show_default=str(DistillConfig.student_lr), rich_help_panel=METHOD),
    disc_lr: float | None = typer.Option(None, help="Discriminator peak learning rate.",
                                         show_default=str(DistillConfig.disc_lr), rich_help_panel=METHOD),
    disc_warmup_steps: int | None = typer.Option(None, help="Discriminator-only iterations before the student moves.",
                                                 show_default=str(DistillConfig.disc_warmup_steps), rich_help_panel=METHOD),
    allow_no_student_steps: bool = typer.Option(False, "--allow-no-student-steps", help="Run (with a warning) even "
                                                "when --steps ≤ --disc-warmup-steps, i.e. the student never moves.",
                                                rich_help_panel=METHOD),
    target: str | None = typer.Option(None, "--positive", help="Discriminator target class: data (released code) | "
                                      "teacher (paper).", show_default=DistillConfig.positive, rich_help_panel=METHOD),
    score_decomposition: bool | None = typer.Option(None, "--score-decomposition/--no-score-decomposition",
                                                    help="2-step student rollout 1→τ→t0 (on) or one jump (off).",
                                                    show_default="on", rich_help_panel=SWITCHES),
    coupled_time: bool | None = typer.Option(None, "--coupled-time/--no-coupled-time", show_default="on",
                                             help="Noise the discriminator's inputs at the student's τ (on) or an "
                                             "independent t.", rich_help_panel=SWITCHES),
    omega: str | None = typer.Option(None, help="Time weight ω: elbo | constant.", show_default=DistillConfig.omega,
                                     rich_help_panel=METHOD),
    pi: str | None = typer.Option(None, help="τ proposal π: beta22 | uniform | beta25 | beta52.",
                                  show_default=DistillConfig.pi, rich_help_panel=METHOD),
    regularization: str | None = typer.Option(None, help="KL to the teacher: jeffrey | forward | reverse | none.",
                                              show_default=DistillConfig.regularization, rich_help_panel=METHOD),
    teacher_pool: int | None = typer.Option(None, help="--positive teacher: number of teacher samples drawn once.",
                                            show_default=str(DistillConfig.teacher_pool), rich_help_panel=METHOD),
    teacher_pool_nfe: int | None = typer.Option(None, help="--positive teacher: NFE of those teacher samples.",
                                                show_default=str(DistillConfig.teacher_pool_nfe), rich_help_panel=METHOD),
    ckpt_every: int | None = typer.Option(None, help="Iterations between checkpoints.",
                                          show_default=str(DistillConfig.ckpt_every), rich_help_panel=RUN),
    log: str | None = typer.Option(None, "--log", help="Also log training curves to: tensorboard (DIR/tensorboard; "
                                   "pip install 'didi-seq\\[tensorboard]'). metrics.jsonl is always written.",
                                   show_default="metrics.jsonl only", rich_help_panel=RUN),
    threads: int | None = typer.Option(None, envvar="DIDI_SEQ_THREADS", help=THREADS_HELP, show_default=THREADS_DEFAULT,
                                       rich_help_panel=HARDWARE),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", rich_help_panel=HARDWARE,
                               help=DEVICE_HELP + "; under torchrun each rank takes its LOCAL_RANK's GPU."),
    seed: int | None = typer.Option(None, help="Seed for initialisation, data order and sampling.",
                                    show_default=str(DistillConfig.seed), rich_help_panel=RUN),
    ema: bool = typer.Option(True, "--ema/--raw", help="Lightning .ckpt teacher: EMA weights (default) or raw."),
) -> None:
    """DiDi-Instruct: distil the teacher into a few-step student (adversarial integral-KL policy gradient).

    Cost with the defaults (400 iterations) on one CPU core: ≈ 33 min for text (≈ 5 s/iteration),
    ≈ 46 min for protein. The student moves only after the discriminator-only warm-up.
    """
    threads = threads_or_default(threads)  # the rest is checked by DistillConfig.validate
    dom = domain_or_fail(domain)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from didi_seq.distill.preflight import check_student_steps
    from didi_seq.distill.trainer import distill as run
    from didi_seq.training_log import check_logger, training_logger

    overrides = {k: v for k, v in {
        "steps": steps, "batch_size": batch_size, "group_size": group_size, "student_lr": student_lr, "disc_lr": disc_lr,
        "disc_warmup_steps": disc_warmup_steps, "positive": target, "score_decomposition": score_decomposition,
        "coupled_time": coupled_time, "omega": omega, "pi": pi, "regularization": regularization, "ckpt_every": ckpt_every,
        "teacher_pool": teacher_pool, "teacher_pool_nfe": teacher_pool_nfe,
        "threads": threads, "seed": seed}.items() if v is not None}
    cfg = DistillConfig(**overrides)
    cfg.validate()  # before anything loads
    warning = None if resume else check_student_steps(cfg, allow=allow_no_student_steps)  # resume: the saved config's
    if warning:
        status(f"warning: {warning}")
    check_logger(log)
    make_run_parent(out)
    with distributed_run(device) as (ranks, dev), training_logger(log, out, ranks.is_main) as logger, progress(
            TextColumn("distill"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not ranks.is_main) as bar:
        task = bar.add_task("distill", total=cfg.steps, info="loading")

        def on_step(step: int, total: int, m: dict) -> None:
            bar.update(task, completed=step, total=total, info=distill_progress(m))
            logger.log(step, m)

        result = run(dom, out, cfg, teacher=teacher, corpus=corpus, resume=resume, on_step=on_step,
                     on_prepare=lambda msg: bar.update(task, info=msg), ranks=ranks, teacher_options={"use_ema": ema},
                     device=dev)
    if ranks.is_main:
        typer.echo(f"distilled {result.step} iterations in {result.wall_clock_s:.0f} s; student: {result.out_dir} "
                   f"(sample it with --checkpoint {result.out_dir})")


def distill_progress(m: dict) -> str:
    """The progress bar's view of one distillation iteration: the discriminator's accuracy, then the
    student's loss and reward once it moves (before that, it says the student is still waiting)."""
    info = f"D acc {m['disc_acc']:.2f}"
    if "loss" not in m:
        return info + " (discriminator warm-up: student not stepping yet)"
    return info + f" student loss {m['loss']:+.3f} reward {m['reward']:+.2f} KL {m['kl']:.2e} H {m['entropy']:.2f}"


@app.command()
@user_errors
def evaluate(
    domain: str = typer.Option(..., help="Domain name."),
    samples: list[Path] = typer.Option(..., help="JSONL samples file (repeat the option to pool several files/seeds)."),
    judge: str | None = typer.Option(None, help="Gen PPL judge: smollm2-135m (offline default), gpt2-large or any hub "
                                     "id in the local cache, a model directory or a .gguf file."),
    output: Path | None = typer.Option(None, help="Write the result record (JSON) here; '-': on stdout (the table then "
                                       "goes to stderr)."),
    metrics: str | None = typer.Option(None, help="Comma-separated metric names (default: all the domain's scorers)."),
    reference_samples: int = typer.Option(64, help="Validation blocks scored as the real-data reference (0: none)."),
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
    for name, v in (("judge-batch-size", judge_batch_size), ("judge-context", judge_context)):
        positive(name, v)
    threads = threads_or_default(threads)
    positive("fold-batch-size", fold_batch_size)
    if pdb_dir is not None and (plddt_model is None or not pdb_dir.is_dir()):
        raise DidiError(f"--pdb-dir {pdb_dir} needs --plddt-model and an existing directory")
    if reference_samples < 0:
        raise DidiError(f"--reference-samples must be 0 or positive, got {reference_samples}")
    dom = domain_or_fail(domain)
    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout:
        from didi_seq.checkpoint import check_parent_dir

        check_parent_dir(output)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from didi_seq.evaluate import describe_files, load_samples, write_result
    from didi_seq.evaluate import evaluate as run

    records = load_samples(samples, dom)  # bad files fail before any model loads
    from didi_seq.devices import resolve_device

    dev = resolve_device(device)
    import torch

    torch.set_num_threads(threads)
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        tasks: dict = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        record = run(dom, records, judge=judge, metrics=metrics.split(",") if metrics else None,
                     reference_samples=reference_samples, on_progress=on_progress,
                     options={"judge_batch_size": judge_batch_size, "judge_context": judge_context,
                              "plddt_model": plddt_model, "pdb_dir": pdb_dir, "fold_batch_size": fold_batch_size,
                              "device": str(dev)})
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

    table = Table(title=f"{record['domain']}: {record['num_samples']} samples, seeds {record['seeds']}, "
                        f"NFE {record['nfe']}, {record['sampler']}, {record['checkpoint']}")
    for col in ("metric", "mean ± std over seeds", "pooled", "real data"):
        table.add_column(col)
    ref = (record.get("reference") or {}).get("values", {})
    for name, m in record["metrics"].items():
        spread = f" ± {m['std']:.3f}" if m["std"] is not None else ""
        table.add_row(f"{name} {m['unit']}".strip(), f"{m['mean']:.3f}{spread}", f"{m['pooled']:.3f}",
                      f"{ref[name]:.3f}" if name in ref else "-")
    console.print(table)
    judge = record["scorers"].get("gen_ppl", {}).get("judge")
    if judge:
        console.print(f"judge: {judge['id']} (revision {str(judge['revision'])[:19]}, context {judge['context']})")
    for name, info in record["scorers"].items():
        for key in ("by_length", "reference_by_length"):
            if info.get(key):  # a scorer's per-length-bucket table (protein pLDDT)
                cells = "; ".join(f"{bucket}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items())
                                  for bucket, row in info[key].items())
                console.print(f"{name} {key.replace('_', ' ')}: {cells}")
    if record.get("skipped_metrics"):
        console.print(f"not computed (need options): {', '.join(record['skipped_metrics'])}")
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
