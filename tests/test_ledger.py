"""The ledger: records keyed by watermark payload, atomic batches, lookups of stripped copies."""

from __future__ import annotations

import io
import sqlite3
import threading

import pytest
from PIL import Image

from aigcguard.fileio import file_sha256
from aigcguard.imageio import save_image
from aigcguard.provenance.credentials.ledger import (
    LEDGER_FORMAT,
    Ledger,
    LedgerError,
    LedgerRecord,
    key_fingerprint,
)
from aigcguard.service.binding import fingerprint
from aigcguard.service.lookup import lookup_images
from aigcguard.watermark import embed
from tests.helpers import to_tensor

KEY = "ledger test key"


def _rec(payload: str, **kw) -> LedgerRecord:
    return LedgerRecord(
        payload=payload, key_id=key_fingerprint(KEY), method="tilemark", generator="test", **kw
    )


def test_record_and_get_round_trip(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        [p] = ledger.new_payloads(1, key_id=key_fingerprint(KEY))
        rec = _rec(
            p,
            model="tiny",
            prompt_sha256="ab" * 32,
            manifest={"active_manifest": "urn:x", "manifests": {}},
            extra={"seed": 3},
        )
        ledger.record([rec])
        assert len(ledger) == 1
        assert ledger.get(p, key_id=key_fingerprint(KEY)) == rec
        assert ledger.get(p.upper()) == rec  # hex case does not matter
        assert ledger.get(p, key_id=key_fingerprint("another key")) is None
    # persists across opens
    with Ledger(tmp_path / "l.sqlite", create=False) as again:
        assert again.get(p) == rec


def test_a_batch_with_a_used_payload_records_nothing(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        a, b = ledger.new_payloads(2, key_id=key_fingerprint(KEY))
        ledger.record([_rec(a)])
        with pytest.raises(LedgerError, match="already recorded"):
            ledger.record([_rec(b), _rec(a)])
        assert len(ledger) == 1 and ledger.get(b) is None
        # the same payload under another key is another mark
        ledger.record([LedgerRecord(a, key_fingerprint("k2"), "tilemark", "test")])
        assert len(ledger) == 2


def test_payloads_fresh_and_checked(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ps = ledger.new_payloads(200, key_id="k")
        assert len(set(ps)) == 200 and all(len(bytes.fromhex(p)) == 8 for p in ps)
        with pytest.raises(ValueError, match="16 hex digits"):
            ledger.record([_rec("xyz")])
        with pytest.raises(ValueError, match="16 hex digits"):
            ledger.get("00")


def test_threads_share_a_ledger(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:

        def work(i):
            for p in ledger.new_payloads(5, key_id=f"k{i}"):
                ledger.record([LedgerRecord(p, f"k{i}", "tilemark", "t")])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ledger) == 20


def test_bad_files_refused_with_their_name(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(LedgerError, match=r"junk\.sqlite"):
        Ledger(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(LedgerError, match="not an aigc-guard ledger"):
        Ledger(other)
    with pytest.raises(LedgerError, match="no such ledger"):
        Ledger(tmp_path / "missing.sqlite", create=False)
    newer = tmp_path / "newer.sqlite"
    Ledger(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'format'")
    with pytest.raises(LedgerError, match="format 99"):
        Ledger(newer)


#: the records table as format 1 made it (before ``binding``)
_FORMAT_1 = """CREATE TABLE records (
    payload TEXT NOT NULL, key_id TEXT NOT NULL, method TEXT NOT NULL,
    generator TEXT NOT NULL, created TEXT NOT NULL, model TEXT,
    prompt_sha256 TEXT, image_sha256 TEXT, path TEXT, manifest TEXT,
    labels TEXT, extra TEXT NOT NULL,
    PRIMARY KEY (key_id, payload))"""


def _format_1_ledger(path) -> str:
    """A ledger written by the last release, with one record; returns its payload."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('format', '1')")
        db.execute(_FORMAT_1)
        db.execute("CREATE INDEX records_image ON records (image_sha256)")
        db.execute(
            "INSERT INTO records VALUES ('0123456789abcdef', ?, 'tilemark', 'old', "
            "'2024-01-01T00:00:00+00:00', NULL, NULL, 'ab', NULL, NULL, NULL, '{}')",
            (key_fingerprint(KEY),),
        )
    return "0123456789abcdef"


def _format_of(path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]


def test_binding_is_recorded_and_kept_out_of_the_json(tmp_path):
    fp = {"kind": "grey-thumbnail", "version": 1, "size": [4, 3], "thumbnail": "AAAA"}
    with Ledger(tmp_path / "l.sqlite") as ledger:
        [p, q] = ledger.new_payloads(2, key_id=key_fingerprint(KEY))
        ledger.record([_rec(p, binding=fp), _rec(q)])
        assert ledger.get(p).binding == fp and ledger.get(q).binding is None
        assert "binding" not in ledger.get(p).to_dict()


def test_a_format_1_ledger_is_migrated_on_opening(tmp_path):
    path = tmp_path / "old.sqlite"
    old = _format_1_ledger(path)
    with Ledger(path, create=False) as ledger:
        rec = ledger.get(old)
        assert rec.generator == "old" and rec.image_sha256 == "ab" and rec.binding is None
        [new] = ledger.new_payloads(1, key_id=key_fingerprint(KEY))
        ledger.record([_rec(new, binding={"kind": "grey-thumbnail"})])
    assert _format_of(path) == str(LEDGER_FORMAT) == "2"
    with Ledger(path) as again:  # opening a migrated ledger changes nothing
        assert len(again) == 2 and again.get(new).binding == {"kind": "grey-thumbnail"}


def test_a_failed_migration_leaves_the_ledger_as_it_was(tmp_path, monkeypatch):
    """The new columns and the format change in one transaction: all or nothing."""
    from aigcguard.provenance.credentials import ledger as ledger_module

    path = tmp_path / "old.sqlite"
    _format_1_ledger(path)
    steps = (*ledger_module._MIGRATIONS["1"], "ALTER TABLE no_such_table ADD COLUMN x TEXT")
    monkeypatch.setitem(ledger_module._MIGRATIONS, "1", steps)
    with pytest.raises(LedgerError, match="no_such_table"):
        Ledger(path)
    assert _format_of(path) == "1"
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(records)")]
    assert "binding" not in columns
    monkeypatch.undo()
    with Ledger(path) as ledger:  # the real migration still applies afterwards
        assert len(ledger) == 1
    assert _format_of(path) == "2"


def test_lookup_finds_a_stripped_re_encoded_copy(tmp_path, photos):
    ledger = Ledger(tmp_path / "l.sqlite")
    payload, stranger = ledger.new_payloads(2, key_id=key_fingerprint(KEY))
    photo = to_tensor(photos["astronaut"])
    [marked] = embed([photo], message=bytes.fromhex(payload), key=KEY)
    original = save_image(marked, tmp_path / "generated.png")
    ledger.record(
        [
            _rec(
                payload,
                image_sha256=file_sha256(original),
                path=str(original),
                binding=fingerprint(marked),
            )
        ]
    )
    # what a platform serves: pixels only (no metadata), JPEG 80
    buf = io.BytesIO()
    Image.open(original).convert("RGB").save(buf, format="JPEG", quality=80)
    (tmp_path / "upload.jpg").write_bytes(buf.getvalue())
    [other] = embed([to_tensor(photos["coffee"])], message=bytes.fromhex(stranger), key=KEY)
    save_image(other, tmp_path / "unrecorded.png")
    save_image(to_tensor(photos["chelsea"]), tmp_path / "plain.png")
    # the copy attack: the recorded mark, payload and all, on a picture it was never on
    [forged] = embed([to_tensor(photos["chelsea"])], message=bytes.fromhex(payload), key=KEY)
    save_image(forged, tmp_path / "forged.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    names = ["upload.jpg", "unrecorded.png", "plain.png", "broken.png", "generated.png"]
    names.append("forged.png")
    found, errors = lookup_images([tmp_path / n for n in names], ledger, key=KEY)
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in found}
    assert by_name["upload.jpg"].state == "found"
    assert by_name["upload.jpg"].record.payload == payload
    assert by_name["upload.jpg"].matched_by == "watermark"
    assert by_name["upload.jpg"].binding.state == "match"
    assert by_name["forged.png"].state == "found" and by_name["forged.png"].record == (
        by_name["upload.jpg"].record
    )
    assert by_name["forged.png"].binding.state == "mismatch"
    assert by_name["unrecorded.png"].binding is None
    assert by_name["unrecorded.png"].state == "not_in_ledger"
    assert by_name["plain.png"].state == "no_watermark" and by_name["plain.png"].record is None
    assert by_name["generated.png"].state == "found"
    assert len(errors) == 1 and "broken.png" in errors[0]
    # with the wrong key the mark is not there
    wrong, _ = lookup_images([tmp_path / "upload.jpg"], ledger, key="some other key")
    assert wrong[0].state == "no_watermark"
    d = by_name["upload.jpg"].to_dict()
    assert d["record"]["payload"] == payload and d["watermark"]["detected"] is True
    assert d["binding"]["state"] == "match" and "binding" not in d["record"]  # no thumbnail
    ledger.close()


def test_untouched_copy_found_by_its_bytes(tmp_path, photos):
    """A picture too small to carry a readable mark is still found while its file is intact."""
    ledger = Ledger(tmp_path / "l.sqlite")
    small = save_image(to_tensor(photos["rocket"][:40, :40]), tmp_path / "tiny.png")
    [p] = ledger.new_payloads(1, key_id=key_fingerprint(KEY))
    ledger.record([_rec(p, image_sha256=file_sha256(small))])
    [res], errors = lookup_images([small], ledger, key=KEY)
    assert not errors and res.state == "found" and res.matched_by == "file_hash"
    assert res.binding.state == "match" and res.binding.inliers is None  # the very file
    ledger.close()


def test_cli_lookup(tmp_path, photos):
    import json

    from click.testing import CliRunner

    from aigcguard.cli import main

    with Ledger(tmp_path / "l.sqlite") as ledger:
        [payload] = ledger.new_payloads(1, key_id=key_fingerprint(KEY))
        ledger.record([_rec(payload)])
    [marked] = embed([to_tensor(photos["coffee"])], message=bytes.fromhex(payload), key=KEY)
    save_image(marked, tmp_path / "a.jpg", quality=85)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    runner = CliRunner()
    args = ["provenance", "lookup", str(tmp_path / "a.jpg"), str(tmp_path / "bad.jpg")]
    r = runner.invoke(main, [*args, "--ledger", str(tmp_path / "l.sqlite"), "--key", KEY])
    assert r.exit_code == 1  # one input failed, the other was answered
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    ok = next(x for x in lines if "state" in x)
    assert ok["state"] == "found" and ok["record"]["payload"] == payload
    assert any("bad.jpg" in x.get("path", "") and "error" in x for x in lines)
    r = runner.invoke(main, [*args[:3], "--ledger", str(tmp_path / "none.sqlite"), "--key", KEY])
    assert r.exit_code != 0 and "no such ledger" in r.output
