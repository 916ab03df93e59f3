"""The generation pipeline: mark on the generator's device, label, sign, record; then find the
record again from a stripped, re-encoded copy."""

from __future__ import annotations

import io
import json

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
