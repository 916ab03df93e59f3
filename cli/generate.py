"""`aigc generate`: run a generation pipeline that marks, labels, signs and records."""

from __future__ import annotations

from pathlib import Path

import click

from aigcguard.cli.common import Run, device_option, key_option


@click.command("generate")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Generation config (TOML or JSON): pipeline, prompts, output, provenance.",
)
@key_option
@device_option
def generate_cmd(config_path, key, device):
    """Generate pictures with the pipeline named in the config; each is watermarked on the
    generator's device, labelled, signed (when the config names a certificate) and recorded
    in the ledger. One JSON line per picture."""
    from aigcguard.service.pipeline import load_job, run_job

    try:
        job = load_job(config_path, key=key, device=device)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    note = job.pipeline.recovery.summary()  # what an earlier, killed run left behind
    if note:
        click.echo(f"recovery: {note}", err=True)
    run = Run()
    try:
        for item in run_job(job):
            run.emit(item.to_dict())
    except ValueError as exc:
        run.fail(str(config_path), str(exc))
    finally:
        job.pipeline.ledger.close()
    run.finish()
