"""The ``didi-seq`` command line: thin wrappers that parse, call the core and print.

Heavy libraries (torch, datasets) are imported inside commands so ``--help`` and
``plugins`` stay fast. A ``DidiError`` becomes one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import contextlib
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
DEVICE_HELP = "Where the networks run: auto (a CUDA GPU if there is one, else the CPU) | cpu | cuda | cuda:N"


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


def domain_or_fail(name: str):
    from didi_seq.plugins import get_domain

    return get_domain(name)


@app.command()
@user_errors
def plugins() -> None:
    """List domains, teacher formats, samplers, scorers and the plugins that provide them."""
    from rich.console import Console
    from rich.table import Table

    from didi_seq.plugins import domains, plugin_names, samplers, scorers, teacher_formats

    console = Console()
    table = Table(title="domains")
    for col in ("name", "description", "embedded teacher", "embedded student"):
        table.add_column(col)
    for d in domains().values():
        has = lambda p: "yes" if p is not None and Path(p).exists() else "no"  # noqa: E731
        table.add_row(d.name, d.description, has(d.embedded_teacher), has(d.embedded_student))
    console.print(table)
    console.print("teacher formats: " + (", ".join(f.name for f in teacher_formats()) or "none"))
    console.print("samplers: " + (", ".join(f"{n} ({', '.join(s.domains)})" if s.domains else n
                                            for n, s in samplers().items()) or "none"))
    console.print("scorers: " + (", ".join(s.name for s in scorers()) or "none"))
    console.print("plugins: " + ", ".join(f"{n} ({dist})" for n, dist in plugin_names()))


@app.command()
@user_errors
def pretrain(
    domain: str = typer.Option(..., help="Domain name (see `didi-seq plugins`)."),
    corpus: str | None = typer.Option(None, help="Corpus: local file/dir (.txt/.json/.jsonl/.parquet), openwebtext "
                                      "(hub, MDLM split), owt:PATH (local OWT copy), or a datasets name; default: embedded."),
    out: Path = typer.Option(Path("runs/pretrain"), help="Run directory (checkpoints, metrics.jsonl)."),
    steps: int | None = typer.Option(None, help="Optimiser steps (default from the preset)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    preset: str | None = typer.Option(None, help="Model/optimiser preset: tiny | small (default: the domain's)."),
    batch_size: int | None = typer.Option(None, help="Sequences per step."),
    lr: float | None = typer.Option(None, help="Peak learning rate."),
    length: int | None = typer.Option(None, help="Sequence length."),
    ckpt_every: int | None = typer.Option(None, help="Steps between checkpoints."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: all cores)."),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE",
                               help=DEVICE_HELP + "; under torchrun each rank takes its LOCAL_RANK's GPU."),
    seed: int = typer.Option(0, help="Seed for initialisation, data order and noise."),
    bf16: bool = typer.Option(True, "--bf16/--no-bf16", help="bf16 autocast for the trunk."),
    tokenizer: str | None = typer.Option(None, help="Tokenizer: the domain's embedded one (default) or, for text, "
                                         "'gpt2' (GPT-2 + mask id 50257, as MDLM) or a tokenizer.json."),
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
        preset or dom.default_preset, dom.presets, steps=steps, batch_size=batch_size, lr=lr, ckpt_every=ckpt_every,
        threads=threads, seed=seed, bf16=bf16, model={"length": length}, tokenizer=tokenizer,
    )
    cfg.validate()  # before the progress bar starts
    with distributed_run(device) as (ranks, dev), Progress(
            TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=False, disable=not ranks.is_main) as progress:
        task = progress.add_task("pretrain", total=cfg.steps, info="")

        def on_step(step: int, total: int, m: dict) -> None:
            info = f"loss {m['loss']:.3f}" + (f" val {m['val_nelbo']:.3f}" if "val_nelbo" in m else "")
            progress.update(task, completed=step, total=total, info=info)

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
    output: Path | None = typer.Option(None, help="JSONL file to write (default: print samples)."),
    batch_size: int = typer.Option(32, help="Sequences per network call."),
    final: str = typer.Option("ancestral", help="Last step: ancestral draw or greedy arg-max."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Disable the exact p(x0) cache."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", help=DEVICE_HELP + "."),
    guidance_start: float = typer.Option(0.2, help="rgas: tilting scale h at the first step."),
    guidance_end: float = typer.Option(1.0, help="rgas: tilting scale h at the last tilting step."),
    rerank_ratio: float = typer.Option(0.5, help="rgas: fraction of (late) steps that re-rank candidates."),
    candidates: int = typer.Option(4, help="rgas: candidates M per re-ranking step."),
    teacher: str | None = typer.Option(None, help="rgas: the teacher the discriminator was trained on (default: found by hash)."),
    ema: bool = typer.Option(True, "--ema/--raw", help="Lightning .ckpt: EMA weights (default, as the papers evaluate) or raw."),
) -> None:
    """Generate samples with a registered sampler: ancestral (fp64 categorical draws, exact cache), RGAS, or a plugin's."""
    for name, v in (("num-samples", num_samples), ("batch-size", batch_size), ("threads", threads)):
        positive(name, v)
    dom = domain_or_fail(domain)
    from didi_seq.generate import generate, load_model, sampler_config

    cfg = sampler_config(sampler, dom.name, nfe=nfe, temperature=temperature, final=final, cache=not no_cache,
                         guidance_start=guidance_start, guidance_end=guidance_end, rerank_ratio=rerank_ratio,
                         candidates=candidates, teacher=teacher)  # before anything is loaded: bad options fail fast
    if output is not None:
        from didi_seq.checkpoint import check_parent_dir

        check_parent_dir(output)
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from didi_seq.devices import resolve_device
    from didi_seq.sample_io import write_jsonl

    if threads:
        torch.set_num_threads(threads)
    model = load_model(dom, checkpoint, device=resolve_device(device), use_ema=ema,
                       on_note=lambda note: typer.echo(f"note: {note}", err=True))
    with Progress(TextColumn("sample"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("sample", total=None)
        out = generate(model, cfg, sampler=sampler, num_samples=num_samples, seed=seed, lengths=lengths,
                       batch_size=batch_size, on_step=lambda done, total: progress.update(task, completed=done, total=total))
    result, records = out.result, out.records
    written = []
    if output is None:
        for rec in records:
            typer.echo(f"--- sample {rec['index']} ---\n{rec[dom.sample_field]}")
    else:
        write_jsonl(output, records)
        written = [output, *(dom.write_samples(output, records) if dom.write_samples else [])]
    aux = f", {result.aux_calls} discriminator calls" if result.aux_calls else ""
    typer.echo(f"{num_samples} samples, NFE {nfe}: {result.network_calls} network calls "
               f"({result.rows_evaluated} sequence evaluations{aux}), {result.wall_clock_s:.1f} s"
               + (f"; wrote {', '.join(map(str, written))}" if written else ""), err=True)


@app.command()
@user_errors
def distill(
    domain: str = typer.Option(..., help="Domain name."),
    teacher: str | None = typer.Option(None, help="Teacher SRC: 'teacher' (embedded, default), a checkpoint path or a hub id."),
    out: Path = typer.Option(Path("runs/distill"), help="Run directory (checkpoints, metrics.jsonl)."),
    steps: int | None = typer.Option(None, help="Distillation iterations."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    corpus: str | None = typer.Option(None, help="Real data for the discriminator's positive class: same forms as "
                                      "pretrain --corpus (default: embedded)."),
    batch_size: int | None = typer.Option(None, help="Target rows per iteration (each repeated group-size times)."),
    group_size: int | None = typer.Option(None, help="G: student samples per target row; advantages are standardised per group."),
    student_lr: float | None = typer.Option(None, help="Student peak learning rate."),
    disc_lr: float | None = typer.Option(None, help="Discriminator peak learning rate."),
    disc_warmup_steps: int | None = typer.Option(None, help="Discriminator-only iterations before the student moves."),
    target: str | None = typer.Option(None, "--positive", help="Discriminator target class: data (released code) | teacher (paper)."),
    score_decomposition: bool | None = typer.Option(None, "--score-decomposition/--no-score-decomposition",
                                                    help="2-step student rollout 1→τ→t0 (on) or one jump (off)."),
    coupled_time: bool | None = typer.Option(None, "--coupled-time/--no-coupled-time",
                                             help="Noise the discriminator's inputs at the student's τ (on) or an independent t."),
    omega: str | None = typer.Option(None, help="Time weight ω: elbo | constant."),
    pi: str | None = typer.Option(None, help="τ proposal π: beta22 | uniform | beta25 | beta52."),
    regularization: str | None = typer.Option(None, help="KL to the teacher: jeffrey | forward | reverse | none."),
    teacher_pool: int | None = typer.Option(None, help="--positive teacher: number of teacher samples drawn once."),
    teacher_pool_nfe: int | None = typer.Option(None, help="--positive teacher: NFE of those teacher samples."),
    ckpt_every: int | None = typer.Option(None, help="Iterations between checkpoints."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE",
                               help=DEVICE_HELP + "; under torchrun each rank takes its LOCAL_RANK's GPU."),
    seed: int | None = typer.Option(None, help="Seed for initialisation, data order and sampling."),
    ema: bool = typer.Option(True, "--ema/--raw", help="Lightning .ckpt teacher: EMA weights (default) or raw."),
) -> None:
    """DiDi-Instruct: distil the teacher into a few-step student (adversarial integral-KL policy gradient)."""
    positive("threads", threads)  # the rest is checked by DistillConfig.validate
    dom = domain_or_fail(domain)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from didi_seq.distill.config import DistillConfig
    from didi_seq.distill.trainer import distill as run

    overrides = {k: v for k, v in {
        "steps": steps, "batch_size": batch_size, "group_size": group_size, "student_lr": student_lr, "disc_lr": disc_lr,
        "disc_warmup_steps": disc_warmup_steps, "positive": target, "score_decomposition": score_decomposition,
        "coupled_time": coupled_time, "omega": omega, "pi": pi, "regularization": regularization, "ckpt_every": ckpt_every,
        "teacher_pool": teacher_pool, "teacher_pool_nfe": teacher_pool_nfe,
        "threads": threads, "seed": seed}.items() if v is not None}
    cfg = DistillConfig(**overrides)
    cfg.validate()  # before anything loads
    with distributed_run(device) as (ranks, dev), Progress(
            TextColumn("distill"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not ranks.is_main) as progress:
        task = progress.add_task("distill", total=cfg.steps, info="loading")

        def on_step(step: int, total: int, m: dict) -> None:
            info = f"D acc {m['disc_acc']:.2f}"
            if "reward" in m:
                info += f" reward {m['reward']:+.2f} KL {m['kl']:.2e} H {m['entropy']:.2f}"
            progress.update(task, completed=step, total=total, info=info)

        result = run(dom, out, cfg, teacher=teacher, corpus=corpus, resume=resume, on_step=on_step,
                     on_prepare=lambda msg: progress.update(task, info=msg), ranks=ranks, teacher_options={"use_ema": ema},
                     device=dev)
    if ranks.is_main:
        typer.echo(f"distilled {result.step} iterations in {result.wall_clock_s:.0f} s; student: {result.out_dir} "
                   f"(sample it with --checkpoint {result.out_dir})")


@app.command()
@user_errors
def evaluate(
    domain: str = typer.Option(..., help="Domain name."),
    samples: list[Path] = typer.Option(..., help="JSONL samples file (repeat the option to pool several files/seeds)."),
    judge: str | None = typer.Option(None, help="Gen PPL judge: smollm2-135m (offline default), gpt2-large or any hub "
                                     "id in the local cache, a model directory or a .gguf file."),
    output: Path | None = typer.Option(None, help="Write the result record (JSON) here."),
    metrics: str | None = typer.Option(None, help="Comma-separated metric names (default: all the domain's scorers)."),
    reference_samples: int = typer.Option(64, help="Validation blocks scored as the real-data reference (0: none)."),
    judge_batch_size: int = typer.Option(8, help="Texts per judge forward pass."),
    judge_context: int = typer.Option(1024, help="Truncate re-tokenised samples to this many judge tokens."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    plddt_model: str | None = typer.Option(None, help="Protein: ESMFold for pLDDT — a transformers EsmForProteinFolding "
                                           "directory, a cached hub id (facebook/esmfold_v1), or fair-esm[:TORCH_HUB_DIR]. "
                                           "The reference sequences are folded too: on a CPU keep --reference-samples small."),
    pdb_dir: Path | None = typer.Option(None, help="Protein, with --plddt-model: write one PDB file per sample here."),
    fold_batch_size: int = typer.Option(4, help="Protein: sequences per ESMFold call."),
    device: str = typer.Option("auto", envvar="DIDI_SEQ_DEVICE", help=DEVICE_HELP + " (for the judge / ESMFold)."),
) -> None:
    """Score samples: Gen PPL under a judge (text), entropy, and a real-data reference line."""
    for name, v in (("judge-batch-size", judge_batch_size), ("judge-context", judge_context), ("threads", threads)):
        positive(name, v)
    positive("fold-batch-size", fold_batch_size)
    if pdb_dir is not None and (plddt_model is None or not pdb_dir.is_dir()):
        raise DidiError(f"--pdb-dir {pdb_dir} needs --plddt-model and an existing directory")
    if reference_samples < 0:
        raise DidiError(f"--reference-samples must be 0 or positive, got {reference_samples}")
    dom = domain_or_fail(domain)
    if output is not None:
        from didi_seq.checkpoint import check_parent_dir

        check_parent_dir(output)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from didi_seq.evaluate import describe_files, load_samples, write_result
    from didi_seq.evaluate import evaluate as run

    records = load_samples(samples, dom)  # bad files fail before any model loads
    from didi_seq.devices import resolve_device

    dev = resolve_device(device)
    if threads:
        import torch

        torch.set_num_threads(threads)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        tasks: dict = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        record = run(dom, records, judge=judge, metrics=metrics.split(",") if metrics else None,
                     reference_samples=reference_samples, on_progress=on_progress,
                     options={"judge_batch_size": judge_batch_size, "judge_context": judge_context,
                              "plddt_model": plddt_model, "pdb_dir": pdb_dir, "fold_batch_size": fold_batch_size,
                              "device": str(dev)})
    record["samples_files"] = describe_files(samples)
    if output is not None:
        write_result(output, record)
    _print_record(Console(), record)
    if output is not None:
        typer.echo(f"wrote {output}", err=True)


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
