"""``aigc watermark embed | detect | methods``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from aigcguard.cli.common import (
    Run,
    batch_size_option,
    device_option,
    image_batches,
    key_option,
    method_option,
    per_item,
    unique_output,
)
from aigcguard.imageio import save_image
from aigcguard.watermark import (
    DEFAULT_P_THRESHOLD,
    KNOWN_MARKS,
    PAYLOAD_BYTES,
    detect,
    detect_known,
    embed,
    get_method,
    list_methods,
    parse_message,
    strongest,
)
from aigcguard.watermark.calibration import load_calibration
from aigcguard.watermark.files import FileDetection, MarkedFile, psnr

_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}

unkeyed_option = click.option(
    "--unkeyed",
    is_flag=True,
    help="Bare invisible-watermark layout: the message bits alone, no key, no sync bits.",
)
message_options = [
    click.option("--message", help="Message as text (UTF-8)."),
    click.option("--message-hex", help="Message as hexadecimal bytes."),
]


def _with(options):
    def wrap(func):
        for option in reversed(options):
            func = option(func)
        return func

    return wrap


def _check_unkeyed(unkeyed: bool, method: str) -> None:
    if unkeyed and get_method(method).needs_key:
        raise click.UsageError(
            f"--unkeyed writes and reads the bare imwatermark layout, which {method} does not "
            f"have: add --method dwtdct (or dwtdctsvd)"
        )


@click.group("watermark")
def watermark_group() -> None:
    """Embed and detect invisible watermarks."""


@watermark_group.command("embed")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the marked images.",
)
@method_option
@_with(message_options)
@key_option
@unkeyed_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(_SUFFIX)),
    default="png",
    show_default=True,
    help="Output format; png is lossless.",
)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True)
@device_option
@batch_size_option
def embed_cmd(
    inputs, out_dir, method, message, message_hex, key, unkeyed, fmt, quality, device, batch_size
):
    """Mark IMAGE_OR_DIR... and write them to --out; one JSON line per image.

    Without --message each image gets a fresh random 8-byte payload, printed as `payload`:
    record it (the provenance ledger does) to trace the image later.
    """
    try:
        fixed = None
        if message is not None or message_hex is not None:
            fixed = parse_message(message, message_hex)
            if not fixed:
                raise ValueError("the message is empty")
            if not unkeyed and len(fixed) > PAYLOAD_BYTES:
                raise ValueError(f"the message is {len(fixed)} bytes; at most {PAYLOAD_BYTES}")
        elif unkeyed:
            raise ValueError("--unkeyed needs --message or --message-hex")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--message") from None
    _check_unkeyed(unkeyed, method)
    use_key = None if unkeyed else key
    run = Run()
    taken: set[Path] = set()
    for batch in image_batches(inputs, batch_size, run):
        messages = [fixed if fixed is not None else os.urandom(PAYLOAD_BYTES) for _ in batch]
        sources = [img.source for img in batch]

        def mark(idx, _batch=batch, _messages=messages):
            return embed(
                [_batch[i].pixels for i in idx],
                [_messages[i] for i in idx],
                key=use_key,
                method=method,
                device=device,
            )

        marked = per_item(mark, sources, run)
        for img, pixels, msg in zip(batch, marked, messages, strict=True):
            if pixels is None:
                continue
            try:  # the error boundary of one picture
                out_path = _write(img, pixels, out_dir, fmt, quality, taken, run)
                if out_path is None:
                    continue
                written = MarkedFile(
                    path=img.source,
                    output=str(out_path),
                    method=method,
                    bits=len(msg) * 8 if unkeyed else PAYLOAD_BYTES * 8,
                    payload=(msg if unkeyed else msg.ljust(PAYLOAD_BYTES, b"\0")).hex(),
                    psnr=psnr(img.pixels, pixels),
                )
            except Exception as exc:
                run.crash(img.source, exc)
                continue
            run.emit(written.to_dict())
    run.finish()


def _write(img, pixels, out_dir: Path, fmt: str, quality: int, taken, run) -> Path | None:
    """Save one marked picture; None (its failure reported) when it cannot be written."""
    out_path = unique_output(out_dir, Path(img.source).stem, _SUFFIX[fmt], taken)
    if out_path.resolve() == Path(img.source).resolve():
        run.fail(img.source, f"output {out_path} would overwrite the input")
        return None
    try:
        save_image(pixels, out_path, format=fmt, quality=quality)
    except OSError as exc:
        run.fail(img.source, f"cannot write {out_path}: {exc}")
        return None
    return out_path


@watermark_group.command("detect")
@click.argument("inputs", nargs=-1, required=True)
@method_option
@key_option
@unkeyed_option
@_with(message_options)
@click.option(
    "--known",
    is_flag=True,
    help="Also scan for marks others embed (Stable Diffusion v1, SDXL); report the strongest.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_P_THRESHOLD,
    show_default=True,
    help="p-value at or below which a mark counts as detected.",
)
@device_option
@batch_size_option
def detect_cmd(
    inputs, method, key, unkeyed, message, message_hex, known, threshold, device, batch_size
):
    """Look for watermarks in IMAGE_OR_DIR...; one JSON line per image.

    `p_value` is the chance that an unmarked image matches as many bits; `detected` means
    p_value <= threshold. A given --message is checked too (verification), and is required
    with --unkeyed.
    """
    expected = None
    if message is not None or message_hex is not None:
        try:
            expected = parse_message(message, message_hex)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--message") from None
    if unkeyed and expected is None:
        raise click.UsageError("--unkeyed needs the expected --message or --message-hex")
    _check_unkeyed(unkeyed, method)
    use_key = None if unkeyed else key
    run = Run()
    for batch in image_batches(inputs, batch_size, run):

        def find(idx, _batch=batch):
            pixels = [_batch[i].pixels for i in idx]
            found = detect(
                pixels,
                key=use_key,
                method=method,
                message=expected,
                device=device,
                p_threshold=threshold,
            )
            if known:
                found = strongest(found, detect_known(pixels, device=device, p_threshold=threshold))
            return found

        try:
            found = find(range(len(batch)))
        except ValueError as exc:  # the key, method or message do not fit: for every picture
            raise click.UsageError(str(exc)) from None
        except Exception:
            # something unexpected: one picture at a time, so it costs only the picture(s)
            # that raise it, each with its error line
            found = per_item(find, [img.source for img in batch], run, whole=False)
        for img, result in zip(batch, found, strict=True):
            if result is not None:
                run.emit(FileDetection(img.source, result).to_dict())
    run.finish()


@watermark_group.command("methods")
def methods_cmd():
    """List the watermark methods, their measured false-positive rates and the known marks."""
    calibration = load_calibration()
    for name in list_methods():
        m = get_method(name)
        line = f"{name:<12} {m.description}"
        entry = calibration.get("methods", {}).get(name)
        if entry:
            line += (
                f"\n{'':<12} false positives at p<={entry['p_threshold']:g}: "
                f"{entry['false_positives']} of {entry['trials']} unmarked trials"
            )
        click.echo(line)
    click.echo("\nknown marks (--known):")
    for mark in KNOWN_MARKS:
        click.echo(f"  {mark.name:<20} {len(mark.bits)} bits  {mark.description}")
