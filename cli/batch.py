"""``aigc batch TASK``: a job over many files, on Ray or here. One command per registered
batch task (``aigcguard.service.batch.TASKS``), with the options the task declares."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aigcguard.cli.common import (
    EXIT_INTERNAL,
    EXIT_UNUSABLE,
    descriptor_option,
    device_option,
    store_spec,
)
from aigcguard.service.batch import TASKS, BatchError, TaskOption, renamed, run_batch


def _common(func):
    options = [
        click.argument("sources", nargs=-1, required=True),
        click.option(
            "--out",
            "dest",
            required=True,
            type=click.Path(path_type=Path),
            help="Folder for the Parquet part files (a re-run skips what is already there).",
        ),
        click.option(
            "--ray-address",
            default="local",
            show_default=True,
            help="local: Ray on this machine; auto: the cluster this machine belongs to; "
            "ray://HOST:10001 or HOST:6379: that cluster; none: this process, without Ray.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1),
            help="Ray actors at most (each loads the models once). Default and limit: one per "
            "CPU, or one per GPU when the cluster has GPUs.",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(0, min_open=True),
            help="GPUs per actor when the cluster has GPUs (0.5: two actors share one).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 4096),
            default=32,
            show_default=True,
            help="Files decoded and processed together.",
        ),
        click.option(
            "--rows-per-file",
            type=click.IntRange(1),
            default=1024,
            show_default=True,
            help="Rows gathered into one part file.",
        ),
        device_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: click settings for each kind of task option (see TaskOption)
_KINDS = {
    "text": {},
    "flag": {"is_flag": True},
    "probability": {"type": click.FloatRange(0, 1, min_open=True)},
    "file": {"type": click.Path(exists=True, dir_okay=False)},
    "files": {"type": click.Path(exists=True, dir_okay=False), "multiple": True},
    "store": {"callback": store_spec},
}


def _click_option(option: TaskOption):
    if option.kind == "descriptor":
        return descriptor_option
    flag = "--" + option.name.replace("_", "-")
    return click.option(
        flag, option.name, envvar=option.envvar, help=option.help, **_KINDS[option.kind]
    )


def _value(option: TaskOption, value):
    """What the task receives: unset stays None (so it is not recorded), paths absolute."""
    if option.kind == "flag":
        return value or None
    if option.kind == "file" and value is not None:
        return str(Path(value).resolve())
    if option.kind == "files":
        return tuple(str(Path(v).resolve()) for v in value) or None
    if option.kind == "store" and value is not None:
        from aigcguard.provenance.similarity.stores import is_local

        return str(value.resolve() if is_local(value) else value)
    return value


def _run(task: str, sources, dest, options: dict, **engine) -> None:
    try:
        report = run_batch(task, sources, dest, options=options, **engine)
    except BatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(report.to_json())
    for damaged in report.damaged:
        click.echo(f"damaged part file: {damaged}", err=True)
    if report.failures:
        click.echo(f"{report.failed} of {report.processed} inputs failed:", err=True)
        for path, reason in report.failures.items():
            click.echo(f"  {path}: {reason}", err=True)
        if report.internal_errors:
            click.echo(
                f"{report.internal_errors} internal error(s), a bug: please report it", err=True
            )
            sys.exit(EXIT_INTERNAL)
        sys.exit(EXIT_UNUSABLE)


def task_command(task: str, spelled: str | None = None) -> click.Command:
    """``aigc batch TASK``; ``spelled``: a former name of the task, which still works (one
    release) and says so on stderr."""
    cls, meta = TASKS.get(task), TASKS.meta(task)

    def command(sources, dest, **given):
        if spelled:
            click.echo(f"aigc batch {spelled} is deprecated; use aigc batch {task}", err=True)
        options = {o.name: _value(o, given.pop(o.name)) for o in cls.task_options}
        _run(task, sources, dest, options, **given)

    for option in reversed(cls.task_options):
        command = _click_option(option)(command)
    doc = meta.get("help") or (cls.__doc__ or "").strip()
    if spelled:
        doc = f"Deprecated: use `aigc batch {task}`. {doc}"
    return click.command(spelled or task, help=doc, hidden=spelled is not None)(_common(command))


class TaskGroup(click.Group):
    """Commands made from the batch task registry when asked for, so every registered task
    (a plug-in's too) is a command, and a task's former name still runs it."""

    def list_commands(self, ctx):
        return TASKS.list()

    def get_command(self, ctx, name):
        if name in TASKS:
            return task_command(name.strip().lower())
        current = renamed(name)
        return task_command(current, spelled=name) if current else None


@click.group("batch", cls=TaskGroup)
def batch_group() -> None:
    """Run a job over many files (folders, files, or .txt/.csv/.parquet listings with a
    `path` column) on Ray Data, and write Parquet: one row per file with the fields the
    matching command prints as JSON, or its error. Prints a JSON summary; exits 1 if any
    file failed (its row says why), 3 if one raised an unexpected exception (a bug)."""
