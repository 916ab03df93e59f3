import importlib
import sys

import click

from aigcguard import __version__
from aigcguard.cli.common import EXIT_INTERNAL, EXIT_UNUSABLE, explain_crash
from aigcguard.results import error_text, is_internal_error

#: every command, as (module under aigcguard.cli, attribute, the first sentence of its help):
#: imported when it is run or its own help is shown, so `aigc --version` and `aigc --help` do
#: not import torch and the models (issue 22); a test keeps the sentences equal to the help
COMMANDS = {
    "watermark": ("watermark", "watermark_group", "Embed and detect invisible watermarks."),
    "index": (
        "similarity",
        "index_group",
        "Register reference works and manage the similarity index.",
    ),
    "similar": ("similarity", "similar_cmd", "Which registered works does each image copy?"),
    "eval": ("evaluate", "eval_group", "Benchmarks on your own data."),
    "audit": (
        "similarity",
        "audit_cmd",
        "Audit a batch: verdict counts, worst offenders first, creator shares (and payouts).",
    ),
    "detect": ("detect", "detect_cmd", "Is each picture (or video) generated?"),
    "detector": (
        "detect",
        "detector_group",
        "Train and evaluate real-versus-generated detectors.",
    ),
    "provenance": (
        "provenance",
        "provenance_group",
        "Content Credentials, AI labels and the ledger of generated pictures.",
    ),
    "generate": (
        "generate",
        "generate_cmd",
        "Generate pictures with the pipeline named in the config; each is watermarked on the "
        "generator's device, labelled, signed (when the config names a certificate) and "
        "recorded in the ledger.",
    ),
    "check": (
        "check",
        "check_cmd",
        "Check each picture with every available signal: Content Credentials, labels and "
        "generator metadata, known watermarks, our watermark and its ledger record, the "
        "detector, and similarity (with --index).",
    ),
    "serve": ("serve", "serve_cmd", "Serve the checks over HTTP (OpenAPI docs at /docs)."),
    "batch": (
        "batch",
        "batch_group",
        "Run a job over many files (folders, files, or .txt/.csv/.parquet listings with a "
        "`path` column) on Ray Data, and write Parquet: one row per file with the fields the "
        "matching command prints as JSON, or its error.",
    ),
}

EXIT_CODES = """\b
Exit codes:
  0  every input processed
  1  some inputs unusable (each has its {"path", "error"} line; the others are done)
  2  usage error (a bad option or argument)
  3  internal error: an unexpected exception, named on its line (a bug; set AIGC_DEBUG=1
     for the traceback)"""


class _Main(click.Group):
    """The ``aigc`` group: an exception that no command handled is told in one line (the
    traceback with AIGC_DEBUG=1), never a bare traceback. Unexpected (a bug: RuntimeError,
    KeyError, ...), it is named and the exit code is 3; a bad input or environment (ValueError,
    OSError, this package's own errors: the rule of :func:`error_text`) gives its message
    and exit 1. Commands are imported on first use (:data:`COMMANDS`)."""

    def list_commands(self, ctx) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            command = getattr(importlib.import_module(f"aigcguard.cli.{module}"), attr)
            self.add_command(command, name)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter) -> None:
        """The command list from :data:`COMMANDS`' sentences: listing imports nothing."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in COMMANDS and name not in self.commands:
                sentence = click.Command(name, help=COMMANDS[name][2])
                rows.append((name, sentence.get_short_help_str(limit)))
            elif not (command := self.commands[name]).hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, **kwargs)
        except Exception as exc:  # click has handled its own errors (usage: 2) by now
            explain_crash(exc)
            text = error_text(exc)
            if is_internal_error(text):
                click.echo(f"error: {text} (a bug; AIGC_DEBUG=1 prints the traceback)", err=True)
                sys.exit(EXIT_INTERNAL)
            click.echo(f"error: {text}", err=True)
            sys.exit(EXIT_UNUSABLE)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="aigc")
def main() -> None:
    """aigc-guard: where did this image come from?"""
