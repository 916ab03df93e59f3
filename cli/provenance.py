"""`aigc provenance ...`: the ledger lookup (and, with the C2PA and label modules, signing,
verifying and labelling)."""

from __future__ import annotations

from pathlib import Path

import click

from aigcguard.cli.common import (
    Run,
    batch_size_option,
    device_option,
    image_batches,
    input_paths,
    key_option,
    method_option,
    per_item,
)

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
    with `state` (found, not_in_ledger, payload_unreadable, no_watermark), the detection, the
    record and `binding` (match, or mismatch: the mark was copied from the recorded picture
    onto this one). Works on copies stripped of all metadata and re-encoded."""
    from aigcguard.provenance.credentials.ledger import Ledger, LedgerError
    from aigcguard.service.lookup import lookup

    try:
        ledger = Ledger(ledger_path, create=False)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    run = Run()
    with ledger:
        for batch in image_batches(inputs, batch_size, run):

            def find(idx, _batch=batch):
                pictures = [_batch[i] for i in idx]
                return lookup(pictures, ledger, key=key, method=method, device=device)

            for result in per_item(find, [img.source for img in batch], run):
                if result is not None:
                    run.emit(result.to_dict())
    run.finish()


@provenance_group.command("dev-ca")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for ca.pem (trust anchor), chain.pem (leaf then CA) and key.pem.",
)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing files in the folder.")
def dev_ca_cmd(out_dir, days, overwrite):
    """Make a test certificate authority and signing certificate, for development only: the
    C2PA library refuses self-signed signers, so this writes a CA and a leaf it issued."""
    from aigcguard.provenance.credentials.dev_ca import make_dev_ca

    try:
        made = make_dev_ca(out_dir, days=days, overwrite=overwrite)
    except (FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(made.to_json())


@provenance_group.command("sign")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cert", "cert_chain", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--generator", default="aigc-guard", show_default=True, help="Claim generator.")
@click.option("--generator-version", help="Its version (default: this package's).")
@click.option(
    "--parent", type=click.Path(exists=True, dir_okay=False), help="Parent ingredient file."
)
@click.option(
    "--soft-binding",
    help="METHOD:PAYLOAD_HEX of the watermark the picture carries, e.g. tilemark:1a2b...",
)
@click.option("--title", help="Title recorded in the manifest.")
@click.option("--thumbnail", is_flag=True, help="Embed a thumbnail (off: smaller, faster).")
def sign_cmd(
    image,
    cert_chain,
    key_file,
    out,
    generator,
    generator_version,
    parent,
    soft_binding,
    title,
    thumbnail,
):
    """Sign IMAGE with C2PA Content Credentials declaring it AI-generated (IPTC
    trainedAlgorithmicMedia); writes OUT (may be IMAGE itself)."""
    from aigcguard.provenance.credentials.c2pa import sign

    binding = None
    if soft_binding:
        method, sep, payload = soft_binding.partition(":")
        if not sep or not method or not payload:
            raise click.BadParameter("expected METHOD:PAYLOAD_HEX", param_hint="--soft-binding")
        binding = (method, payload)
    try:
        result = sign(
            image,
            out,
            cert_chain=cert_chain,
            key=key_file,
            generator=generator,
            generator_version=generator_version,
            parent=parent,
            soft_binding=binding,
            title=title,
            thumbnail=thumbnail,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.to_json())


@provenance_group.command("verify")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--trust",
    "trust_anchors",
    multiple=True,
    envvar="AIGC_TRUST",  # credentials.c2pa.TRUST_ENV; kept literal so --help loads no c2pa
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of trusted root certificates, such as the C2PA Trust List (repeatable; "
    "without --trust, the files in AIGC_TRUST, separated by the path separator).",
)
def verify_cmd(inputs, trust_anchors):
    """Check each picture's C2PA manifests: one JSON line with `integrity` (intact, altered,
    unreadable), `standing` (trusted, untrusted, expired, revoked), the chain of `manifests`,
    the `declarations` of how it was made, and `state` (trusted, valid, invalid, absent)."""
    from aigcguard.provenance.credentials.c2pa import verify

    run = Run()
    for path in input_paths(inputs, run):
        try:  # the error boundary of one picture
            run.emit(verify(path, trust_anchors=list(trust_anchors) or None).to_dict())
        except Exception as exc:
            run.crash(str(path), exc)
    run.finish()


@provenance_group.command("label")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--producer", required=True, help="GB 45438 ContentProducer: who generated it.")
@click.option("--produce-id", help="GB 45438 ProduceID: the producer's id for this content.")
@click.option("--propagator", help="GB 45438 ContentPropagator: who publishes it.")
@click.option("--propagate-id", help="GB 45438 PropagateID.")
@click.option(
    "--label",
    "label_value",
    type=click.Choice(["1", "2", "3"]),
    default="1",
    show_default=True,
    help="GB 45438 Label: 1 generated, 2 possibly generated, 3 suspected.",
)
@click.option(
    "--digital-source-type",
    default="trainedAlgorithmicMedia",
    show_default=True,
    help="IPTC digital source type (code or URI); `none` to leave it out.",
)
def label_cmd(
    image, out, producer, produce_id, propagator, propagate_id, label_value, digital_source_type
):
    """Write the GB 45438-2025 implicit label and the IPTC digital source type into IMAGE's
    XMP, writing OUT (may be IMAGE itself); pixels and all other metadata are kept, and a
    label already present is kept, never overwritten."""
    from aigcguard.provenance.credentials.labels import write_label

    dst = None if digital_source_type.lower() == "none" else digital_source_type
    try:
        written = write_label(
            image,
            out,
            producer=producer,
            produce_id=produce_id,
            propagator=propagator,
            propagate_id=propagate_id,
            digital_source_type=dst,
            label=int(label_value),
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(written.to_json())


@provenance_group.command("read")
@click.argument("inputs", nargs=-1, required=True)
def read_cmd(inputs):
    """Every AI signal in each picture's metadata: the GB 45438 label (XMP, PNG text or
    EXIF), the IPTC digital source type, and generator traces (Stable Diffusion and ComfyUI
    PNG chunks, EXIF Software and XMP CreatorTool of known generators). One JSON line each;
    a missing label proves nothing, as platforms strip metadata."""
    from aigcguard.provenance.credentials.labels import read_labels

    run = Run()
    for path in input_paths(inputs, run):
        try:  # the error boundary of one picture
            run.emit(read_labels(path).to_dict())
        except Exception as exc:
            run.crash(str(path), exc)
    run.finish()
