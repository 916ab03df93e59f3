"""The ledger: what was generated, keyed by the watermark payload it carries.

Metadata does not survive platforms (they strip XMP, EXIF and C2PA manifests); the watermark
does. So every picture the generation pipeline marks is recorded here under its payload, and
``aigcguard.service.lookup`` reads the mark of any copy, however stripped and re-encoded, and
finds the record here:
when, by which generator and model, the prompt's hash, the hash of the file as written, the
C2PA manifest it was signed with, and a content fingerprint of the picture (``binding``: a mark
can be copied onto another picture, so what a mark leads to is trusted only for a picture that
matches the record's fingerprint).

A ledger is one SQLite file (``meta`` table with the format version; ``records`` with one row
per payload and key). A ledger of an older format is brought up to date when opened, in one
transaction (format 1 lacked ``binding``: its records read back with None); a newer one is
refused. Each ``record`` call is one transaction: a batch is recorded whole or not at all.
Payloads are allocated here (``new_payloads``), at random, and checked unused under the same
key, so two pictures never share one.

    with Ledger("ledger.sqlite") as ledger:
        [payload] = ledger.new_payloads(1, key_id=key_fingerprint(key))
        ledger.record([LedgerRecord(payload=payload, ...)])
        record = ledger.get(payload, key_id=key_fingerprint(key))
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aigcguard.fileio import file_sha256
from aigcguard.results import NOT_JSON, JsonResult

#: 2: records gained ``binding`` (format 1 ledgers are migrated on opening)
LEDGER_FORMAT = 2

#: lookup states: the record was found; a mark was read but no record has its payload; a mark
#: was detected but its payload could not be read reliably; no mark


class LedgerError(ValueError):
    """A ledger file that cannot be opened or used (names the file and the problem)."""


def key_fingerprint(key: str | bytes) -> str:
    """A short public name for a watermark key (never the key itself): the ledger keeps
    records per key, since the same payload under two keys is two different marks."""
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return hashlib.sha256(b"aigcguard/key-id/v1\x00" + raw).hexdigest()[:16]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LedgerRecord(JsonResult):
    """One generated picture. ``payload``: the watermark payload (hex); ``key_id``: the key's
    fingerprint; ``prompt_sha256``: the prompt's hash, never the prompt; ``image_sha256``: of
    the file as written (after labels and signing); ``manifest``: the C2PA manifest store as
    read back from that file (JSON), if it was signed; ``binding``: the content fingerprint of
    the marked picture as written (a small grey thumbnail, see docs/provenance.md, "Binding"),
    None for records made before fingerprints. ``binding`` is kept in the ledger and out of
    ``to_dict()``: a lookup or a check reports whether a picture matches it, never the
    thumbnail itself (about 13 KB each, and a copy of the recorded picture)."""

    payload: str
    key_id: str
    method: str
    generator: str
    created: str = field(default_factory=_now)
    model: str | None = None
    prompt_sha256: str | None = None
    image_sha256: str | None = None
    path: str | None = None
    manifest: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    binding: dict[str, Any] | None = field(default=None, metadata=NOT_JSON)


_COLUMNS = (
    "payload",
    "key_id",
    "method",
    "generator",
    "created",
    "model",
    "prompt_sha256",
    "image_sha256",
    "path",
    "manifest",
    "labels",
    "extra",
    "binding",
)
_JSON_COLUMNS = {"manifest", "labels", "extra", "binding"}
#: the statements that take a ledger of format N (the key) to N + 1
_MIGRATIONS = {"1": ("ALTER TABLE records ADD COLUMN binding TEXT",)}


class Ledger:
    """A SQLite ledger at ``path`` (created if missing). Safe to share between threads; use as
    a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise LedgerError(f"{self.path}: no such ledger")
        if self.path.exists() and not self.path.is_file():
            raise LedgerError(f"{self.path}: is not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._init()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable ledger ({exc})") from None

    def _init(self) -> None:
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            row = self._db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if row is None:
                tables = self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'meta'"
                ).fetchall()
                if tables:
                    raise LedgerError(f"{self.path}: a SQLite file, but not an aigc-guard ledger")
                self._db.execute("BEGIN")
                self._db.execute("INSERT INTO meta VALUES ('format', ?)", (str(LEDGER_FORMAT),))
                self._db.execute(
                    """CREATE TABLE records (
                        payload TEXT NOT NULL, key_id TEXT NOT NULL, method TEXT NOT NULL,
                        generator TEXT NOT NULL, created TEXT NOT NULL, model TEXT,
                        prompt_sha256 TEXT, image_sha256 TEXT, path TEXT, manifest TEXT,
                        labels TEXT, extra TEXT NOT NULL, binding TEXT,
                        PRIMARY KEY (key_id, payload))"""
                )
                self._db.execute("CREATE INDEX records_image ON records (image_sha256)")
                self._db.execute("COMMIT")
            elif row[0] != str(LEDGER_FORMAT):
                self._migrate(row[0])

    def _migrate(self, found: str) -> None:
        """Bring a ledger of an older format up to this one: the new columns and the format
        in one transaction, so a ledger is wholly of one format. A newer one is refused."""
        newer = LedgerError(
            f"{self.path}: ledger format {found}, this version reads {LEDGER_FORMAT}"
        )
        if found not in _MIGRATIONS:
            raise newer
        try:
            self._db.execute("BEGIN IMMEDIATE")  # re-read: another process may have migrated
            [now] = self._db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            while now != str(LEDGER_FORMAT):
                if now not in _MIGRATIONS:
                    raise newer
                for statement in _MIGRATIONS[now]:
                    self._db.execute(statement)
                now = str(int(now) + 1)
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'format'", (now,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # ---- writing

    def new_payloads(self, n: int, *, key_id: str) -> list[str]:
        """``n`` fresh random 64-bit payloads (hex) unused under ``key_id``. They are not
        reserved: record them in the same process before handing out more."""
        out: list[str] = []
        with self._lock:
            while len(out) < n:
                p = secrets.token_bytes(8).hex()
                taken = self._db.execute(
                    "SELECT 1 FROM records WHERE key_id = ? AND payload = ?", (key_id, p)
                ).fetchone()
                if not taken and p not in out:
                    out.append(p)
        return out

    def record(self, records: Sequence[LedgerRecord]) -> None:
        """Add records in one transaction; a payload already recorded under the same key
        refuses the whole batch (a payload must lead back to one picture)."""
        rows = []
        for r in records:
            _check_payload(r.payload)
            d = {**r.to_dict(), "binding": r.binding}
            rows.append(
                tuple(
                    json.dumps(d[c], ensure_ascii=False, sort_keys=True)
                    if c in _JSON_COLUMNS and d[c] is not None
                    else d[c]
                    for c in _COLUMNS
                )
            )
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    f"INSERT INTO records ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    rows,
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise LedgerError(
                    f"{self.path}: a payload in this batch is already recorded under the same "
                    "key; nothing of the batch was recorded"
                ) from None
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # ---- reading

    def get(self, payload: str, *, key_id: str | None = None) -> LedgerRecord | None:
        """The record of ``payload`` (hex) under ``key_id``, or under any key if None (the
        newest first, should two keys have used it)."""
        _check_payload(payload)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM records WHERE payload = ?"
        args: tuple = (payload.lower(),)
        if key_id is not None:
            sql += " AND key_id = ?"
            args += (key_id,)
        with self._lock:
            row = self._db.execute(sql + " ORDER BY created DESC LIMIT 1", args).fetchone()
        return None if row is None else _from_row(row)

    def by_image_sha256(self, digest: str) -> list[LedgerRecord]:
        """Records whose file, as written, has this SHA-256 (an untouched copy)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM records WHERE image_sha256 = ?", (digest,)
            ).fetchall()
        return [_from_row(r) for r in rows]

    def iter_files(self, *, chunk: int = 5000) -> Iterator[tuple[str, str, str, str | None]]:
        """``(key_id, payload, path, image_sha256)`` of every record that names a file, in
        insertion order, read ``chunk`` rows at a time: constant memory however large the
        ledger (the generation pipeline's recovery checks each record's picture with it)."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT rowid, key_id, payload, path, image_sha256 FROM records "
                    "WHERE rowid > ? AND path IS NOT NULL ORDER BY rowid LIMIT ?",
                    (last, chunk),
                ).fetchall()
            for row in rows:
                yield row[1], row[2], row[3], row[4]
            if len(rows) < chunk:
                return
            last = rows[-1][0]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_payload(payload: str) -> None:
    try:
        ok = len(bytes.fromhex(payload)) == 8
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"payload must be 16 hex digits (64 bits), got {payload!r}")


def _from_row(row: tuple) -> LedgerRecord:
    d = dict(zip(_COLUMNS, row, strict=True))
    for c in _JSON_COLUMNS:
        if d[c] is not None:
            d[c] = json.loads(d[c])
    return LedgerRecord(**d)


def find_record(
    ledger: Ledger, watermark, source: str | Path | None, *, key_id: str
) -> tuple[LedgerRecord | None, str | None]:
    """A picture's record and how it was found: by the payload of its detected ``watermark``
    (made with the key ``key_id`` fingerprints), else by the bytes of its file ``source``
    (an untouched copy is found even where the mark cannot be read); ``(None, None)``."""
    if watermark is not None and watermark.detected and watermark.payload is not None:
        rec = ledger.get(watermark.payload, key_id=key_id)
        if rec is not None:
            return rec, "watermark"
    same = None if source is None else _same_file(str(source), ledger)
    return (same, "file_hash") if same is not None else (None, None)


def _same_file(source: str, ledger: Ledger) -> LedgerRecord | None:
    try:
        found = ledger.by_image_sha256(file_sha256(source))
    except OSError:  # not a file on disk (bytes, a stream)
        return None
    return found[0] if found else None
