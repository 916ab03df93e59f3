"""The paths a job runs over: image files, folders, and listings of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from aigcguard.service.batch.tasks import BatchError

MANIFEST_SUFFIXES = (".parquet", ".csv", ".txt")


def list_sources(
    inputs: Iterable[str | os.PathLike], *, on_skip: Callable[[str, str], None] | None = None
) -> list[str]:
    """The paths a job runs over, in order, each once.

    An input is an image file, a folder of images, a listing file (``.txt``: one path a line;
    ``.csv`` / ``.parquet``: a ``path`` column) or a folder of listing files (a folder with
    manifests and no images). Relative paths in a listing are relative to the listing's
    folder. A file that is not an image is kept, so its row reports why it failed. Paths come
    back absolute: workers on other machines (or in another folder) read the same files.
    Each entry of a folder that is not listed (not a picture, a link loop, a named pipe: see
    :func:`aigcguard.imageio.iter_image_paths`) goes to ``on_skip(path, reason)`` instead.
    """
    from aigcguard.imageio import iter_image_paths

    out: dict[str, None] = {}
    for item in inputs:
        path = Path(os.fsdecode(item))
        if path.is_dir():
            skipped: list[tuple[Path, str]] = []
            note = skipped.append
            images = list(iter_image_paths([path], on_skip=lambda p, r, n=note: n((p, r))))
            manifests = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            if images or not manifests:
                out.update((os.path.abspath(p), None) for p in images)
            else:
                for manifest in manifests:
                    out.update((p, None) for p in read_listing(manifest))
            if on_skip is not None:
                # a folder of listings reads its listings: they are not skipped entries
                listings = set() if images else set(manifests)
                for p, reason in skipped:
                    if p not in listings:
                        on_skip(os.path.abspath(p), reason)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            out.update((p, None) for p in read_listing(path))
        else:
            out[os.path.abspath(path)] = None
    return list(out)


def read_listing(path: Path) -> list[str]:
    """The paths a listing file names (see :func:`list_sources`)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            names = [
                line.strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        else:
            names = _path_column(path, suffix)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BatchError(f"{path}: cannot read the listing ({exc})") from None
    return [os.path.abspath(path.parent / p) for p in names]


def _path_column(path: Path, suffix: str) -> list[str]:
    import pyarrow as pa

    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            if "path" not in schema.names:
                raise ValueError(f"no 'path' column (columns: {', '.join(schema.names)})")
            column = pq.read_table(path, columns=["path"]).column("path")
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(
                path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
            )
            if "path" not in table.column_names:
                raise ValueError(f"no 'path' column (columns: {', '.join(table.column_names)})")
            column = table.column("path")
    except pa.ArrowException as exc:
        raise ValueError(str(exc)) from None
    return [str(v) for v in column.to_pylist() if v not in (None, "")]
