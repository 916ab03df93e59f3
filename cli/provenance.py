"""`aigc provenance ...`: the ledger lookup (and, with the C2PA and label modules, signing,
verifying and labelling)."""

from __future__ import annotations

from pathlib import Path

import click

from aigcguard.cli.common import Run, batch_size_option, device_option, image_batches
from aigcguard.cli.watermark import key_option, method_option

ledger_option = click.option(
    "--ledger",
    "ledger_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AIGC_LEDGER",
    help="The ledger file (SQLite) the generation pipeline records into (or AIGC_LEDGER).",
)


@click.group("provenance")
def provenance_group() -> None:
    """Content Credentials, AI labels and the ledger of generated pictures."""


@provenance_group.command("lookup")
@click.argument("inputs", nargs=-1, required=True)
@ledger_option
@key_option
@method_option
@device_option
@batch_size_option
def lookup_cmd(inputs, ledger_path, key, method, device, batch_size):
    """Read each picture's watermark and print its ledger record: one JSON line per picture
    with `state` (found, not_in_ledger, payload_unreadable, no_watermark), the detection and
    the record. Works on copies stripped of all metadata and re-encoded."""
    from aigcguard.provenance.ledger import Ledger, LedgerError, lookup

    try:
        ledger = Ledger(ledger_path, create=False)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    run = Run()
    with ledger:
        for batch in image_batches(inputs, batch_size, run):
            for result in lookup(batch, ledger, key=key, method=method, device=device):
                run.emit(result.to_dict())
    run.finish()
