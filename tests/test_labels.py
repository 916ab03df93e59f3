"""AI labels: GB 45438 and IPTC written into JPEG, PNG and WebP without touching anything else,
and every AI signal read back."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from aigcguard.provenance.credentials import containers
from aigcguard.provenance.credentials.labels import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    DIGITAL_SOURCE_TYPES,
    GB45438_FIELDS,
    TC260_NS,
    TRAINED_ALGORITHMIC_MEDIA,
    read_labels,
    write_label,
)
from tests.helpers import SHARED

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
PHOTOSHOP_FILL = SHARED / "c2pa" / "signed" / "photoshop_generative_fill.jpg"


def xmp_packet(body: str, ns: str = "") -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"{ns}>'
        f"{body}</rdf:Description></rdf:RDF></x:xmpmeta>" + " " * 200 + '<?xpacket end="w"?>'
    ).encode()


CREATOR_XMP = xmp_packet("<dc:creator><rdf:Seq><rdf:li>Ann Lee</rdf:li></rdf:Seq></dc:creator>")
FOREIGN = {"Label": "1", "ContentProducer": "00119110000ABCDEFGHJK00001", "ProduceID": "doubao-1"}
FOREIGN_XMP = xmp_packet(
    "<dc:creator><rdf:Seq><rdf:li>Ann Lee</rdf:li></rdf:Seq></dc:creator>"
    # Escaped the way Doubao's files have it.
    "<TC260:AIGC>" + json.dumps(FOREIGN).replace('"', "&quot;") + "</TC260:AIGC>",
    ns=f' xmlns:TC260="{TC260_NS}"',
)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif(**tags) -> Image.Exif:
    e = Image.Exif()
    names = {"software": 0x0131, "make": 0x010F, "description": 0x010E}
    for name, value in tags.items():
        e[names[name]] = value
    return e


def photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def make_jpeg(path: Path, *, xmp: bytes | None = CREATOR_XMP, app11: bool = True, **exif_tags):
    """A JPEG with EXIF, ICC, XMP, a comment and (optionally) a JUMBF-like APP11 segment."""
    buf = io.BytesIO()
    kwargs = {"xmp": xmp} if xmp is not None else {}
    e = exif(**(exif_tags or {"software": "Canon EOS Utility"}))
    photo().save(buf, "JPEG", quality=90, exif=e, icc_profile=icc(), comment=b"hello", **kwargs)
    data = buf.getvalue()
    if app11:
        jumbf = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumbc2pa" + bytes(range(16))
        data = data[:2] + b"\xff\xeb" + struct.pack(">H", len(jumbf) + 2) + jumbf + data[2:]
    path.write_bytes(data)
    return path


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment) up to and including the scan, which runs to the end."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xDA:
            out.append((marker, data[pos:]))
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        out.append((marker, data[pos:end]))
        pos = end
    return out


def jpeg_xmp(data: bytes) -> bytes:
    segs = [s for m, s in jpeg_segments(data) if m == 0xE1 and s[4:].startswith(XMP_HEADER)]
    assert len(segs) == 1, "exactly one XMP packet"
    return segs[0][4 + len(XMP_HEADER) :]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append((data[pos + 4 : pos + 8], data[pos : pos + 12 + length]))
        pos += 12 + length
    return out


def text_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def make_png(path: Path, *, xmp: bytes | None = CREATOR_XMP, texts=(), raw_chunks=()) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "dawn")
    info.add_itxt("Description", "夜明け", lang="ja", tkey="dawn", zip=True)
    info.add_text("Comment", "zipped", zip=True)
    for key, value in texts:
        info.add_text(key, value)
    if xmp is not None:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    photo(1).save(path, pnginfo=info, exif=exif(software="GIMP 2.10"), icc_profile=icc())
    if raw_chunks:  # appended before IEND, as a tool writing after the pixels would
        data = path.read_bytes()
        path.write_bytes(data[:-12] + b"".join(raw_chunks) + data[-12:])
    return path


# --- writing ----------------------------------------------------------------------------------


def test_jpeg_label_round_trip_keeps_every_other_byte(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg")
    out = tmp_path / "out.jpg"
    written = write_label(src, out, producer="示例公司 001", produce_id="job-7", propagator="cdn")
    assert written.gb45438_action == "written" and written.digital_source_type_action == "written"
    assert written.changed and written.format == "JPEG"
    assert written.gb45438["ContentProducer"] == "示例公司 001"

    report = read_labels(out)
    assert report.ai_labelled and report.format == "JPEG"
    assert report.gb45438.source == "xmp" and report.gb45438.label == 1
    fields = report.gb45438.fields
    assert list(fields) == list(GB45438_FIELDS)
    assert fields["ProduceID"] == "job-7" and fields["ContentPropagator"] == "cdn"
    assert fields["Label"] == "1" and fields["ReservedCode1"] == ""
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    json.loads(report.to_json())

    before, after = src.read_bytes(), out.read_bytes()
    assert np.array_equal(pixels(src), pixels(out))
    # Every segment but the XMP one is byte-identical and in the same order.
    keep = [s for m, s in jpeg_segments(before) if not s[4:].startswith(XMP_HEADER)]
    assert [s for m, s in jpeg_segments(after) if not s[4:].startswith(XMP_HEADER)] == keep
    # The old packet is still all there; our description was only inserted into it.
    old, new = jpeg_xmp(before), jpeg_xmp(after)
    cut = old.rindex(b"</rdf:RDF>")
    assert new.startswith(old[:cut]) and new.endswith(old[cut:])
    assert b"<TC260:AIGC>" in new and b"<Iptc4xmpExt:DigitalSourceType>" in new
    with Image.open(out) as im:
        assert im.getexif()[0x0131] == "Canon EOS Utility"
        assert im.info["icc_profile"] == icc()
        assert im.info["comment"] == b"hello"


def test_jpeg_without_xmp_gets_a_packet_after_exif(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg", xmp=None, app11=False)
    write_label(src, src, producer="p")
    markers = [(m, s[4:10]) for m, s in jpeg_segments(src.read_bytes())]
    exif_at = next(i for i, (m, head) in enumerate(markers) if head.startswith(b"Exif"))
    assert markers[exif_at + 1][1] == XMP_HEADER[:6]
    assert read_labels(src).gb45438.fields["ContentProducer"] == "p"


def test_png_label_round_trip_keeps_every_other_chunk(tmp_path):
    src = make_png(tmp_path / "in.png", texts=[("Software", "GIMP 2.10")])
    out = tmp_path / "out.png"
    write_label(
        src, out, producer="示例", digital_source_type="compositeWithTrainedAlgorithmicMedia"
    )
    report = read_labels(out)
    assert report.gb45438.source == "xmp" and report.gb45438.fields["ContentProducer"] == "示例"
    assert report.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert report.ai_labelled and report.generator_signals == []

    def is_xmp(c):
        return c[0] == b"iTXt" and c[1][8:].startswith(b"XML:com.adobe.xmp\x00")

    before, after = png_chunks(src.read_bytes()), png_chunks(out.read_bytes())
    assert [c for c in after if not is_xmp(c)] == [c for c in before if not is_xmp(c)]
    assert [t for t, _ in after] == [t for t, _ in before]  # the XMP chunk stayed in place
    assert np.array_equal(pixels(src), pixels(out))
    with Image.open(out) as im:
        im.load()
        assert im.text["Title"] == "dawn" and im.text["Description"] == "夜明け"
        assert im.text["Comment"] == "zipped"
        assert im.getexif()[0x0131] == "GIMP 2.10" and im.info["icc_profile"] == icc()
        assert b"Ann Lee" in im.info["xmp"]


def test_png_without_xmp_gets_an_itxt_chunk_before_the_pixels(tmp_path):
    src = make_png(tmp_path / "in.png", xmp=None)
    before = src.read_bytes()
    write_label(src, src, producer="p")
    after = png_chunks(src.read_bytes())
    types = [t for t, _ in after]
    assert types.index(b"iTXt", types.index(b"eXIf")) < types.index(b"IDAT")
    assert [c for c in after if b"XML:com.adobe.xmp" not in c[1][:30]] == png_chunks(before)
    assert read_labels(src).ai_labelled
    assert np.array_equal(pixels(src), np.asarray(Image.open(io.BytesIO(before)).convert("RGBA")))


@pytest.mark.parametrize(
    ("mode", "extended", "options"),
    [("RGBA", False, {"lossless": True}), ("RGB", False, {"quality": 80}), ("RGB", True, {})],
    ids=["simple-lossless-alpha", "simple-lossy", "extended-with-exif-xmp"],
)
def test_webp_label_round_trip(tmp_path, mode, extended, options):
    src = tmp_path / "in.webp"
    if extended:
        options = {"exif": exif(software="GIMP").tobytes(), "xmp": CREATOR_XMP}
    im = photo(2).convert(mode)
    if mode == "RGBA":  # real transparency, or libwebp drops the alpha channel
        im.putalpha(Image.linear_gradient("L").resize(im.size))
    im.save(src, "WEBP", **options)
    out = tmp_path / "out.webp"
    write_label(src, out, producer="p")
    report = read_labels(out)
    assert report.gb45438.fields["ContentProducer"] == "p" and report.ai_labelled
    assert np.array_equal(pixels(src), pixels(out))
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.mode == mode
        if extended:
            assert im.getexif()[0x0131] == "GIMP" and b"Ann Lee" in im.info["xmp"]


@pytest.mark.parametrize("xmp", [None, CREATOR_XMP], ids=["new-packet", "packet-after-mpf"])
def test_multi_picture_jpeg_keeps_its_second_image(tmp_path, xmp):
    # A packet grown after the MPF header moves the second image away from where the MP
    # index says it is; the index must follow.
    src = tmp_path / "in.mpo"
    extra = {"xmp": xmp} if xmp else {}
    photo(3).save(src, "MPO", save_all=True, append_images=[photo(4)], quality=90, **extra)
    out = tmp_path / "out.jpg"
    write_label(src, out, producer="p")
    with Image.open(src) as a, Image.open(out) as b:
        assert b.n_frames == 2
        for frame in range(2):
            a.seek(frame)
            b.seek(frame)
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert read_labels(out).gb45438.fields["ContentProducer"] == "p"


def test_writing_twice_is_idempotent(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg")
    once, twice = tmp_path / "once.jpg", tmp_path / "twice.jpg"
    write_label(src, once, producer="p", produce_id="1")
    again = write_label(once, twice, producer="someone else", produce_id="2")
    assert twice.read_bytes() == once.read_bytes()
    assert not again.changed
    assert again.gb45438_action == "kept" and again.digital_source_type_action == "kept"
    assert again.gb45438["ContentProducer"] == "p"


def test_out_equal_to_source_rewrites_in_place(tmp_path):
    src = make_png(tmp_path / "in.png")
    written = write_label(src, src, producer="p")
    assert written.changed and read_labels(src).ai_labelled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # no temporary left over
    stamp = src.stat().st_mtime_ns
    assert not write_label(src, src, producer="p").changed
    assert src.stat().st_mtime_ns == stamp  # nothing to add: the file is not touched


def test_foreign_gb45438_label_is_kept(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg", xmp=FOREIGN_XMP)
    out = tmp_path / "out.jpg"
    written = write_label(src, out, producer="us", produce_id="ours")
    assert written.gb45438_action == "kept" and written.gb45438 == FOREIGN
    assert written.digital_source_type_action == "written"  # the file had none
    packet = jpeg_xmp(out.read_bytes())
    assert packet.count(b"TC260:AIGC>") == 2  # theirs, opened and closed; no second label
    assert b"Ann Lee" in packet
    report = read_labels(out)
    assert report.gb45438.fields == FOREIGN and report.digital_source_type


def test_label_in_png_text_chunk_is_read_and_kept(tmp_path):
    # Doubao writes the label's JSON as a plain tEXt chunk keyed AIGC.
    src = make_png(tmp_path / "in.png", xmp=None, texts=[("AIGC", json.dumps(FOREIGN))])
    report = read_labels(src)
    assert report.gb45438.source == "png-text" and report.gb45438.key == "AIGC"
    assert report.gb45438.fields == FOREIGN and report.ai_labelled
    written = write_label(src, src, producer="us")
    assert written.gb45438_action == "kept" and written.gb45438 == FOREIGN
    assert read_labels(src).gb45438.source == "png-text"


def test_label_in_exif_is_read(tmp_path):
    # Tencent Cloud's form: {"AIGC": {...}} in EXIF ImageDescription.
    src = make_jpeg(tmp_path / "in.jpg", xmp=None, description=json.dumps({"AIGC": FOREIGN}))
    report = read_labels(src)
    assert report.gb45438.source == "exif" and report.gb45438.key == "ImageDescription"
    assert report.gb45438.fields == FOREIGN and report.ai_labelled


def test_existing_digital_source_type_is_kept(tmp_path):
    capture = DIGITAL_SOURCE_TYPES["digitalCapture"]
    xmp = xmp_packet(
        f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{capture}"/>',
        ns=' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"',
    )
    src = make_png(tmp_path / "in.png", xmp=xmp)
    assert read_labels(src).digital_source_type == capture
    assert not read_labels(src).ai_labelled  # a camera capture is not an AI signal
    written = write_label(src, src, producer="p")
    assert written.digital_source_type_action == "kept" and written.digital_source_type == capture
    assert written.gb45438_action == "written"


def test_digital_source_type_can_be_skipped_and_is_validated(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg")
    written = write_label(src, tmp_path / "o.jpg", producer="p", digital_source_type=None)
    assert written.digital_source_type_action == "skipped"
    assert read_labels(tmp_path / "o.jpg").digital_source_type is None
    with pytest.raises(ValueError, match="digital source type"):
        write_label(src, tmp_path / "x.jpg", producer="p", digital_source_type="aiMadeThis")
    with pytest.raises(ValueError, match="Label"):
        write_label(src, tmp_path / "x.jpg", producer="p", label=4)
    with pytest.raises(ValueError, match="producer"):
        write_label(src, tmp_path / "x.jpg", producer="")
    assert not (tmp_path / "x.jpg").exists()


def test_possibly_ai_label(tmp_path):
    src = make_png(tmp_path / "in.png")
    write_label(src, src, producer="p", propagator="platform", label=2)
    gb = read_labels(src).gb45438
    assert gb.label == 2 and gb.fields["Label"] == "2"


# --- reading ----------------------------------------------------------------------------------

A1111 = (
    "a watercolor fox, morning light\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model: sd_xl_base_1.0"
)
COMFY_PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 5}}}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}


def test_a1111_and_comfyui_png_chunks_are_detected(tmp_path):
    src = make_png(
        tmp_path / "in.png",
        xmp=None,
        texts=[
            ("parameters", A1111),
            ("prompt", json.dumps(COMFY_PROMPT)),
            ("workflow", json.dumps(COMFY_WORKFLOW)),
        ],
    )
    report = read_labels(src)
    found = {(s.source, s.key): s.generator for s in report.generator_signals}
    assert found == {
        ("png-text", "parameters"): "Stable Diffusion WebUI (A1111)",
        ("png-text", "prompt"): "ComfyUI",
        ("png-text", "workflow"): "ComfyUI",
    }
    assert report.ai_labelled and report.gb45438 is None and report.unparsable == []


def test_long_values_are_truncated(tmp_path):
    src = make_png(tmp_path / "in.png", texts=[("parameters", "x" * 5000 + "\n" + A1111)])
    [signal] = read_labels(src).generator_signals
    assert len(signal.value) <= 200 and signal.value.endswith("…")


def test_a1111_jpeg_user_comment_is_detected(tmp_path):
    # A1111 saves JPEG parameters as EXIF UserComment, "UNICODE" + UTF-16BE (via piexif).
    e = Image.Exif()
    e.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    path = tmp_path / "a1111.jpg"
    photo().save(path, quality=90, exif=e)
    [signal] = read_labels(path).generator_signals
    assert (signal.source, signal.key) == ("exif", "UserComment")
    assert signal.value.startswith("a watercolor fox")


@pytest.mark.parametrize(
    ("software", "generator"),
    [
        ("Midjourney", "Midjourney"),
        ("Adobe Firefly", "Adobe Firefly"),
        ("DALL·E 3", "DALL-E / OpenAI"),
        ("Google Imagen 3", "Google Imagen / Gemini"),
        ("NovelAI", "NovelAI"),
        ("FLUX.1 [dev]", "FLUX / Black Forest Labs"),
    ],
)
def test_known_generator_in_exif_software(tmp_path, software, generator):
    path = make_jpeg(tmp_path / "in.jpg", xmp=None, software=software)
    report = read_labels(path)
    assert [(s.key, s.generator) for s in report.generator_signals] == [("Software", generator)]
    assert report.ai_labelled


@pytest.mark.parametrize("software", ["Adobe Photoshop 25.0", "Editor de imagen", "Kendall Edit"])
def test_ordinary_software_is_no_signal(tmp_path, software):
    report = read_labels(make_jpeg(tmp_path / "in.jpg", software=software))
    assert report.generator_signals == [] and not report.ai_labelled


def test_xmp_creator_tool_and_novelai_png(tmp_path):
    xmp = xmp_packet(
        "<xmp:CreatorTool>Adobe Firefly Image 3</xmp:CreatorTool>",
        ns=' xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
    )
    report = read_labels(make_jpeg(tmp_path / "ff.jpg", xmp=xmp))
    assert [(s.key, s.generator) for s in report.generator_signals] == [
        ("xmp:CreatorTool", "Adobe Firefly")
    ]
    nai = json.dumps({"prompt": "1girl", "steps": 28, "uc": "lowres", "sampler": "k_euler"})
    # Comment is already written by make_png; NovelAI's goes on a second chunk after it.
    src = make_png(
        tmp_path / "nai.png",
        xmp=None,
        texts=[("Software", "NovelAI")],
        raw_chunks=[text_chunk(b"tEXt", b"Comment\x00" + nai.encode())],
    )
    found = {s.key: s.generator for s in read_labels(src).generator_signals}
    assert found == {"Software": "NovelAI", "Comment": "NovelAI"}


def test_plain_photo_reports_nothing(tmp_path):
    for path in (make_jpeg(tmp_path / "p.jpg"), make_png(tmp_path / "p.png")):
        report = read_labels(path)
        assert not report.ai_labelled
        assert report.gb45438 is None and report.digital_source_type is None
        assert report.generator_signals == [] and report.unparsable == []


def test_other_formats_are_read_through_pillow(tmp_path):
    path = tmp_path / "p.tif"
    photo().save(path, exif=exif(software="Midjourney"))
    report = read_labels(path)
    assert report.format == "TIFF" and report.generator_signals[0].generator == "Midjourney"
    with pytest.raises(ValueError, match="TIFF"):
        write_label(path, tmp_path / "o.tif", producer="p")


# --- malformed input --------------------------------------------------------------------------


def test_malformed_xmp_is_reported_not_raised(tmp_path):
    broken = CREATOR_XMP.replace(b"</rdf:li>", b"</rdf:lu>")
    src = make_jpeg(tmp_path / "in.jpg", xmp=broken, software="Midjourney")
    report = read_labels(src)
    assert [(u.source, "XMP" in u.error) for u in report.unparsable] == [("xmp", True)]
    assert report.generator_signals[0].generator == "Midjourney"  # the rest is still read
    before = src.read_bytes()
    with pytest.raises(ValueError, match=r"in\.jpg.*XMP"):
        write_label(src, src, producer="p")  # merging could lose what the packet holds
    assert src.read_bytes() == before


def test_xml_entities_are_refused(tmp_path):
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + CREATOR_XMP
    report = read_labels(make_png(tmp_path / "in.png", xmp=bomb))
    assert "DOCTYPE" in report.unparsable[0].error


def test_malformed_json_is_reported_not_raised(tmp_path):
    xmp = xmp_packet(
        '<TC260:AIGC>{"Label": "1", oops</TC260:AIGC>', ns=f' xmlns:TC260="{TC260_NS}"'
    )
    src = make_png(
        tmp_path / "in.png",
        xmp=xmp,
        texts=[("prompt", "{not json"), ("workflow", '{"nodes": ' + "[" * 100_000)],
    )
    report = read_labels(src)
    assert report.gb45438.fields is None and "JSON" in report.gb45438.error
    assert report.gb45438.label is None and not report.ai_labelled
    assert {(u.source, u.key) for u in report.unparsable} == {
        ("xmp", "TC260:AIGC"),
        ("png-text", "prompt"),
        ("png-text", "workflow"),
    }
    # A broken label is still a label: it is kept, not overwritten.
    written = write_label(src, tmp_path / "out.png", producer="p")
    assert written.gb45438_action == "kept" and written.gb45438 is None


def test_malformed_exif_and_text_chunks_are_reported(tmp_path):
    src = make_png(
        tmp_path / "in.png",
        xmp=None,
        raw_chunks=[
            text_chunk(b"zTXt", b"parameters\x00\x00not zlib data"),
            text_chunk(b"eXIf", b"MM\x00*\x00\x00\xff\xff garbage"),
        ],
    )
    report = read_labels(src)
    assert {(u.source, u.key) for u in report.unparsable} == {
        ("png-text", "parameters"),
        ("exif", ""),
    }
    assert not report.ai_labelled


def test_missing_file_and_non_image_name_the_path(tmp_path):
    missing = tmp_path / "nowhere.png"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        read_labels(missing)
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        write_label(missing, tmp_path / "o.png", producer="p")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    with pytest.raises(ValueError, match=re.escape(str(text))):
        read_labels(text)
    with pytest.raises(ValueError, match=re.escape(str(text))):
        write_label(text, tmp_path / "o.jpg", producer="p")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        read_labels(tmp_path)
    assert not (tmp_path / "o.jpg").exists() and not (tmp_path / "o.png").exists()


def test_truncated_jpeg_is_not_written(tmp_path):
    src = make_jpeg(tmp_path / "in.jpg")
    data = src.read_bytes()
    src.write_bytes(data[: data.index(b"\xff\xda")])  # cut before the image data
    read_labels(src)  # reads what is there
    with pytest.raises(ValueError, match="truncated"):
        write_label(src, tmp_path / "o.jpg", producer="p")


# --- C2PA -------------------------------------------------------------------------------------


def test_c2pa_jumbf_segments_survive(tmp_path):
    if not PHOTOSHOP_FILL.is_file():
        pytest.skip(f"shared C2PA sample not found at {PHOTOSHOP_FILL}")
    src = tmp_path / "fill.jpg"
    shutil.copyfile(PHOTOSHOP_FILL, src)
    out = tmp_path / "labelled.jpg"
    write_label(src, out, producer="p")

    def app11(path):
        return [s for m, s in jpeg_segments(path.read_bytes()) if m == 0xEB]

    assert len(app11(src)) == 5 and app11(out) == app11(src)
    assert np.array_equal(pixels(src), pixels(out))
    assert read_labels(out).gb45438.fields["ContentProducer"] == "p"


# --- containers: bytes only -------------------------------------------------------------------


def test_containers_replace_the_packet_and_nothing_else(tmp_path):
    data = make_jpeg(tmp_path / "in.jpg").read_bytes()
    scan = containers.scan_metadata(data, "in.jpg")
    assert scan.format == "JPEG" and scan.complete and scan.xmp.startswith(CREATOR_XMP[:20])
    packet = xmp_packet("<dc:title>t</dc:title>")
    new = containers.put_xmp(data, scan, packet)
    assert containers.scan_metadata(new, "out.jpg").xmp == packet
    start, end = scan.xmp_span
    segment = b"\xff\xe1" + struct.pack(">H", len(XMP_HEADER) + len(packet) + 2)
    assert new == data[:start] + segment + XMP_HEADER + packet + data[end:]
    assert "JPEG" in containers.WRITABLE_FORMATS and "GIF" not in containers.WRITABLE_FORMATS


def test_containers_know_nothing_of_label_meaning():
    code = (
        "import sys, aigcguard.provenance.credentials.containers\n"
        "print(sorted(m for m in sys.modules if m.startswith('aigcguard')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout
    assert "containers" in loaded
    for meaning in ("labels", "gb45438", "iptc", "xmp", "c2pa", "ledger"):
        assert f"credentials.{meaning}'" not in loaded
