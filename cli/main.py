import sys

import click

from aigcguard import __version__
from aigcguard.cli.batch import batch_group
from aigcguard.cli.check import check_cmd
from aigcguard.cli.common import EXIT_INTERNAL, EXIT_UNUSABLE, explain_crash
from aigcguard.cli.detect import detect_cmd, detector_group
from aigcguard.cli.evaluate import eval_group
from aigcguard.cli.generate import generate_cmd
from aigcguard.cli.provenance import provenance_group
from aigcguard.cli.serve import serve_cmd
from aigcguard.cli.similarity import audit_cmd, index_group, similar_cmd
from aigcguard.cli.watermark import watermark_group
from aigcguard.results import error_text, is_internal_error

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
    and exit 1."""

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


main.add_command(watermark_group)
main.add_command(index_group)
main.add_command(similar_cmd)
main.add_command(eval_group)
main.add_command(audit_cmd)
main.add_command(detect_cmd)
main.add_command(detector_group)
main.add_command(provenance_group)
main.add_command(generate_cmd)
main.add_command(check_cmd)
main.add_command(serve_cmd)
main.add_command(batch_group)
