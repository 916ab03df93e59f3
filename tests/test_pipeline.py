"""The generation pipeline: mark on the generator's device, label, sign, record; then find the
record again from a stripped, re-encoded copy."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.fileio import file_sha256
from aigcguard.provenance.credentials import c2pa as credentials
from aigcguard.provenance.credentials import labels
from aigcguard.provenance.credentials.ledger import Ledger
from aigcguard.service.binding import compare
from aigcguard.service.lookup import lookup_images
from aigcguard.service.pipeline import ProvenancePipeline, Signing, as_image_tensors

KEY = "pipeline test key"


@pytest.fixture(scope="module")
def dev_ca(tmp_path_factory):
    return credentials.make_dev_ca(tmp_path_factory.mktemp("ca"))


def photo_generator(photos):
    """A stand-in text-to-image model: one 400 x 400 photo crop per prompt, float in [0, 1]."""
    names = ["astronaut", "coffee", "rocket"]

    def generate(prompt, seed=0):
        out = []
        for i, _ in enumerate(prompt):
            arr = photos[names[(seed + i) % len(names)]][:400, :400]
            out.append(torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0)
        return torch.stack(out)

    return generate


def test_marks_labels_signs_records_and_survives_stripping(tmp_path, photos, dev_ca):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pipe = ProvenancePipeline(
        photo_generator(photos),
        ledger=ledger,
        out_dir=tmp_path / "out",
        key=KEY,
        generator_name="test-service",
        generator_version="1.2",
        model="photo-crops",
        signing=Signing(dev_ca.chain, dev_ca.key),
    )
    made = list(pipe.run(["a cat", "a rocket", "coffee"], batch_size=2, seed=1))
    assert len(made) == 3 and len(ledger) == 3
    assert len({m.payload for m in made}) == 3
    for item in made:
        assert item.labelled and item.signed and file_sha256(item.path) == item.image_sha256
        check = credentials.verify(item.path, trust_anchors=[dev_ca.ca])
        assert check.state == "trusted"
        assert check.digital_source_types == [credentials.TRAINED_ALGORITHMIC_MEDIA]
        assert check.soft_bindings[0]["value"] == item.payload
        assert check.soft_bindings[0]["alg"].endswith(item.method)
        report = labels.read_labels(item.path)
        assert report.gb45438 is not None and report.ai_labelled
        rec = ledger.get(item.payload)
        assert rec.generator == "test-service" and rec.model == "photo-crops"
        assert rec.manifest["state"] == "valid"  # read back without trust anchors
        assert rec.prompt_sha256 is not None and rec.extra == {"seed": 1}
        assert rec.binding["kind"] == "grey-thumbnail" and rec.binding["size"] == [400, 400]

    # a platform strips every byte of metadata and re-encodes: the ledger still answers
    first = made[0]
    buf = io.BytesIO()
    Image.open(first.path).convert("RGB").save(buf, format="JPEG", quality=80)
    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(buf.getvalue())
    assert credentials.verify(stripped).state == "absent"
    assert not labels.read_labels(stripped).ai_labelled
    [found], errors = lookup_images([stripped], ledger, key=KEY)
    assert not errors and found.state == "found" and found.matched_by == "watermark"
    assert found.record.payload == first.payload
    assert found.binding.state == "match"  # the record's fingerprint is of this picture
    # ... and of no other picture the pipeline made (made[1] is another photo)
    other = np.asarray(Image.open(made[1].path).convert("RGB"))
    assert compare(other, found.record.binding).state == "mismatch"
    ledger.close()


def test_failure_leaves_no_picture_and_no_record(tmp_path, photos, dev_ca):
    other = credentials.make_dev_ca(tmp_path / "other")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pipe = ProvenancePipeline(
        photo_generator(photos),
        ledger=ledger,
        out_dir=tmp_path / "out",
        key=KEY,
        generator_name="t",
        signing=Signing(dev_ca.chain, other.key),  # key does not match the certificate
    )
    with pytest.raises(ValueError):
        pipe(["x"])
    assert len(ledger) == 0
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert not list((tmp_path / "out").iterdir())  # no temporary left either
    ledger.close()


def test_generator_outputs_accepted(photos):
    arr = photos["coffee"][:64, :80]
    t = torch.from_numpy(arr).permute(2, 0, 1)
    pil = Image.fromarray(arr)

    class Output:  # what diffusers returns
        def __init__(self):
            self.images = [pil, pil]

    for out in (
        t[None],
        t.float() / 255,
        [t, t.float() / 255],
        [pil],
        arr[None],
        arr.astype(np.float32) / 255,
        Output(),
        (t[None],),
    ):
        got = as_image_tensors(out)
        assert all(g.dtype == torch.uint8 and g.shape == (3, 64, 80) for g in got)
        assert torch.equal(got[0], t)
    with pytest.raises(ValueError, match="not pictures"):
        as_image_tensors("a string")
    with pytest.raises(ValueError, match="3 x H x W"):
        as_image_tensors(torch.zeros(2, 5, 8, 8))


@pytest.fixture(scope="module")
def tiny_diffusers(tmp_path_factory):
    """A tiny randomly initialised unconditional diffusers pipeline, saved like a real one."""
    diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=128,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(10))
    folder = tmp_path_factory.mktemp("tiny-ddpm")
    pipe.save_pretrained(folder)
    return folder


def test_aigc_generate_with_a_diffusers_pipeline(tmp_path, tiny_diffusers, dev_ca):
    config = tmp_path / "gen.toml"
    config.write_text(
        f"""
[pipeline]
diffusers = "{tiny_diffusers}"

[generate]
count = 3
batch_size = 2
kwargs = {{ num_inference_steps = 2 }}

[output]
dir = "pictures"

[provenance]
ledger = "ledger.sqlite"
generator = "tiny-ddpm-service"
producer = "Example Lab"
sign = {{ cert_chain = "{dev_ca.chain}", key = "{dev_ca.key}" }}
"""
    )
    r = CliRunner().invoke(
        main, ["generate", "--config", str(config), "--key", KEY, "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3 and all(x["signed"] and x["labelled"] for x in lines)
    with Ledger(tmp_path / "ledger.sqlite", create=False) as ledger:
        assert len(ledger) == 3
        rec = ledger.get(lines[0]["payload"])
        assert rec.generator == "tiny-ddpm-service" and rec.extra["num_inference_steps"] == 2
    assert (tmp_path / "pictures").is_dir() and len(list((tmp_path / "pictures").iterdir())) == 3
    assert labels.read_labels(lines[0]["path"]).gb45438 is not None


def test_aigc_generate_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nnothing = 1\n[provenance]\nledger = 'l.sqlite'\n")
    r = CliRunner().invoke(main, ["generate", "--config", str(bad)])
    assert r.exit_code != 0 and "bad.toml" in r.output and "diffusers" in r.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[pipeline\n")
    r = CliRunner().invoke(main, ["generate", "--config", str(broken)])
    assert r.exit_code != 0 and "not a valid config" in r.output


# ---- crash safety: temporaries, the commit, the renames, and recovery on the next opening


def toy_generator(prompt=None, batch_size=1, seed=0):
    """Small random pictures, fast (also the generator of tests/test_pipeline_kill.py's runs)."""
    n = len(prompt) if prompt else batch_size
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=g)


def toy_pipeline(tmp_path, ledger, **kw):
    return ProvenancePipeline(
        toy_generator, ledger=ledger, out_dir=tmp_path / "out", key=KEY, generator_name="t", **kw
    )


def test_killed_after_commit_is_finished_on_next_opening(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    made = toy_pipeline(tmp_path, ledger)(batch_size=3)
    # the state a kill between the commit and the renames leaves: records, temporaries
    for item in made[:2]:
        final = Path(item.path)
        final.rename(final.parent / f".{final.name}.0123456789ab.tmp")
    pipe = toy_pipeline(tmp_path, ledger)
    assert sorted(pipe.recovery.completed) == sorted(m.path for m in made[:2])
    assert not pipe.recovery.removed and not pipe.recovery.missing
    for item in made:
        assert file_sha256(item.path) == ledger.get(item.payload).image_sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(m.path).name for m in made
    )
    assert pipe.recover().summary() is None  # nothing left to do
    ledger.close()


def test_unrecorded_temporaries_removed_and_others_files_kept(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    [item] = toy_pipeline(tmp_path, ledger)(batch_size=1)
    out = tmp_path / "out"
    name = "gen-0123456789abcdef.png"  # a batch killed before its commit: no record
    unrecorded = out / f".{name}.a1b2c3d4e5f6.tmp"
    nested = out / f"..{name}.a1b2c3d4e5f6.tmp.0f0f0f0f0f0f.tmp"  # a writer's own leftover
    leftover = out / f".{Path(item.path).name}.ffffffffffff.tmp"  # its picture is there
    wrong = out / f".{Path(item.path).name}"  # not a temporary name: not ours
    for p in (unrecorded, nested, leftover):
        p.write_bytes(b"partial")
    others = [out / "notes.txt", out / ".hidden", out / ".other.tmp", wrong]
    for p in others:
        p.write_bytes(b"keep")
    rec = toy_pipeline(tmp_path, ledger).recovery
    assert sorted(rec.removed) == sorted(str(p) for p in (unrecorded, nested, leftover))
    assert not rec.completed and not rec.missing
    assert all(p.exists() for p in others) and Path(item.path).exists()
    assert "3 unrecorded temporaries removed" in rec.summary()
    ledger.close()


def test_record_whose_picture_is_gone_is_reported_not_deleted(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    made = toy_pipeline(tmp_path, ledger)(batch_size=2)
    Path(made[0].path).unlink()  # gone entirely: cannot be made again
    final = Path(made[1].path)  # a temporary with other bytes than recorded: not the picture
    (final.parent / f".{final.name}.0123456789ab.tmp").write_bytes(b"other bytes")
    final.unlink()
    rec = toy_pipeline(tmp_path, ledger).recovery
    assert sorted(rec.missing) == sorted(m.path for m in made) and len(ledger) == 2
    assert len(rec.removed) == 1 and not rec.completed
    assert "2 ledger records name pictures missing" in rec.summary()
    assert not list((tmp_path / "out").iterdir())
    ledger.close()


def test_recovery_leaves_a_live_writers_folder_alone(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    out = tmp_path / "out"
    out.mkdir()
    temp = out / ".gen-0123456789abcdef.png.a1b2c3d4e5f6.tmp"  # a live batch, not recorded yet
    temp.write_bytes(b"being written")
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a writing pipeline holds
        rec = toy_pipeline(tmp_path, ledger).recovery
        assert rec.skipped and temp.exists() and "skipped" in rec.summary()
    finally:
        os.close(fd)
    assert toy_pipeline(tmp_path, ledger).recovery.removed == (str(temp),)
    ledger.close()


def test_failure_in_a_batch_removes_every_temporary(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pipe = toy_pipeline(tmp_path, ledger)
    real, calls = pipe._write, []

    def second_fails(*args):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("disk full")
        return real(*args)

    monkeypatch.setattr(pipe, "_write", second_fails)
    with pytest.raises(ValueError, match="disk full"):
        pipe(batch_size=3)
    assert len(ledger) == 0 and not list((tmp_path / "out").iterdir())
    ledger.close()


def test_interrupt_just_after_the_commit_keeps_the_pictures(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pipe = toy_pipeline(tmp_path, ledger)
    real = ledger.record

    def record_then_interrupt(records):
        real(records)
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger, "record", record_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pipe(batch_size=2)
    files = list((tmp_path / "out").iterdir())
    assert len(ledger) == 2 and len(files) == 2
    for p in files:
        assert ledger.by_image_sha256(file_sha256(p))[0].path == str(p)
    ledger.close()


def test_aigc_generate_reports_recovery_on_stderr(tmp_path):
    config = tmp_path / "gen.toml"
    config.write_text(
        '[pipeline]\ncallable = "tests.test_pipeline:toy_generator"\n'
        "[generate]\ncount = 2\nbatch_size = 2\n"
        '[output]\ndir = "out"\n[provenance]\nledger = "ledger.sqlite"\n'
    )
    args = ["generate", "--config", str(config), "--key", KEY]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0 and "recovery" not in first.stderr
    gone = json.loads(first.stdout.splitlines()[0])["path"]
    Path(gone).unlink()
    (tmp_path / "out" / ".gen-0123456789abcdef.png.a1b2c3d4e5f6.tmp").write_bytes(b"x")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2
    assert "1 unrecorded temporaries removed" in r.stderr
    assert "1 ledger records name pictures missing" in r.stderr and gone in r.stderr


def test_ledger_iter_files_pages_through_every_record_with_a_path(tmp_path):
    from aigcguard.provenance.credentials.ledger import LedgerRecord

    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        recs = [
            LedgerRecord(
                payload=f"{i:016x}",
                key_id="k",
                method="tilemark",
                generator="t",
                path=None if i == 2 else f"out/gen-{i:016x}.png",
                image_sha256=f"{i}",
            )
            for i in range(6)
        ]
        ledger.record(recs)
        got = list(ledger.iter_files(chunk=2))
    assert got == [("k", r.payload, r.path, r.image_sha256) for r in recs if r.path]
