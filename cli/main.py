import importlib
import sys

import click

from aigcguard import __version__
from aigcguard.cli.common import EXIT_INTERNAL, EXIT_UNUSABLE, explain_crash
from aigcguard.results import error_text, is_internal_error

#: every command, as (module under aigcguard.cli, attribute): imported when it is run or its
#: help is shown, so `aigc --version` does not import torch and the models (issue 22)
COMMANDS = {
    "watermark": ("watermark", "watermark_group"),
    "index": ("similarity", "index_group"),
    "similar": ("similarity", "similar_cmd"),
    "eval": ("evaluate", "eval_group"),
    "audit": ("similarity", "audit_cmd"),
    "detect": ("detect", "detect_cmd"),
    "detector": ("detect", "detector_group"),
    "provenance": ("provenance", "provenance_group"),
    "generate": ("generate", "generate_cmd"),
    "check": ("check", "check_cmd"),
    "serve": ("serve", "serve_cmd"),
    "batch": ("batch", "batch_group"),
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
            module, attr = COMMANDS[name]
            command = getattr(importlib.import_module(f"aigcguard.cli.{module}"), attr)
            self.add_command(command, name)
        return self.commands.get(name)

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
