"""Geometric verification (aigcguard.provenance.similarity.verify) on scikit-image photos:
copies made by cropping, rescaling, JPEG and mirroring verify with the right geometry;
unrelated photos and degenerate inputs do not."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from aigcguard.provenance.similarity.verify import (
    MIN_INLIERS,
    Features,
    Verification,
    extract,
    match_picture,
    verify,
    verify_features,
)
from tests.helpers import to_tensor


def jpeg(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def crop_copy(
    img: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], mirror: bool = False
) -> np.ndarray:
    """Crop (x0, y0, w, h), resize to size (w, h), optionally mirror, then JPEG 75."""
    x0, y0, w, h = box
    out = cv2.resize(img[y0 : y0 + h, x0 : x0 + w], size, interpolation=cv2.INTER_AREA)
    return jpeg(out[:, ::-1] if mirror else out)


def expected_region(ref_shape, box, size, mirror=False) -> np.ndarray:
    """The reference's outline in the copy's frame, from the known crop geometry."""
    x0, y0, w, h = box
    sx, sy = size[0] / w, size[1] / h
    H, W = ref_shape[:2]
    pts = np.array([[0, 0], [W, 0], [W, H], [0, H]], float)
    q = np.stack([(pts[:, 0] - x0) * sx, (pts[:, 1] - y0) * sy], 1)
    if mirror:
        q[:, 0] = size[0] - q[:, 0]
    return q


# astronaut is 512 x 512: a 280 x 280 crop keeps 30% of it, then it is scaled by 1.25
BOX, SIZE = (130, 60, 280, 280), (350, 350)


@pytest.fixture(scope="module")
def astronaut_copy(photos):
    return crop_copy(photos["astronaut"], BOX, SIZE)


@pytest.fixture(scope="module")
def astronaut_features(photos) -> Features:
    return extract(photos["astronaut"])


def test_crop_rescale_jpeg_verifies_with_the_crop_geometry(photos, astronaut_copy):
    v = verify(astronaut_copy, photos["astronaut"])
    assert v.verified and not v.flipped
    assert v.inliers >= 5 * MIN_INLIERS
    assert v.matches >= v.inliers
    region = np.array(v.query_region)
    np.testing.assert_allclose(region, expected_region((512, 512), BOX, SIZE), atol=4.0)
    # The crop's own corners land on the copy's corners: the homography is reference -> query.
    x0, y0, w, h = BOX
    crop = np.array([[[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]]], float)
    mapped = cv2.perspectiveTransform(crop, np.array(v.homography))[0]
    np.testing.assert_allclose(mapped, [[0, 0], [350, 0], [350, 350], [0, 350]], atol=3.0)
    # The copied part of the reference is inside the crop box.
    ref = np.array(v.reference_region)
    assert (ref >= [x0 - 2, y0 - 2]).all() and (ref <= [x0 + w + 2, y0 + h + 2]).all()


def test_mirrored_copy_verifies_flipped(photos):
    coffee = photos["coffee"]  # 600 x 400
    box, size = (200, 80, 300, 240), (240, 192)
    v = verify(crop_copy(coffee, box, size, mirror=True), coffee)
    assert v.verified and v.flipped
    np.testing.assert_allclose(
        np.array(v.query_region), expected_region(coffee.shape, box, size, mirror=True), atol=4.0
    )
    assert np.linalg.det(np.array(v.homography)[:2, :2]) < 0  # the mirror is in the model


@pytest.mark.parametrize(
    "a, b", [("astronaut", "coffee"), ("chelsea", "rocket"), ("camera", "clock")]
)
def test_unrelated_photos_do_not_verify(photos, a, b):
    v = verify(photos[a], photos[b])
    assert not v.verified
    assert v.inliers < MIN_INLIERS


def test_flat_and_tiny_images_give_no_model(photos, astronaut_features):
    grey = np.full((200, 300, 3), 128, np.uint8)
    for query in (grey, np.zeros((3, 3, 3), np.uint8), photos["astronaut"][:1, :1]):
        v = verify_features(extract(query), astronaut_features)
        assert v.inliers == 0 and not v.verified
        assert v.homography is None and v.query_region is None
        json.dumps(v.to_dict())
        assert verify(query, photos["astronaut"][:64, :64], features="orb").inliers == 0
    assert verify(grey, grey).inliers == 0
    assert len(extract(grey)) == 0


def test_tensor_input_matches_array_input(photos, astronaut_copy):
    a = verify(astronaut_copy, photos["astronaut"], max_side=512)
    t = verify(to_tensor(astronaut_copy), to_tensor(photos["astronaut"]), max_side=512)
    assert t.verified and t.inliers == a.inliers
    np.testing.assert_allclose(t.homography, a.homography)


def test_one_query_extraction_serves_several_references(photos, astronaut_copy, astronaut_features):
    qf = extract(astronaut_copy)
    hits = [verify_features(qf, extract(photos[n])) for n in ("coffee", "chelsea")]
    hits.append(verify_features(qf, astronaut_features))
    assert [h.verified for h in hits] == [False, False, True]
    assert hits[2].inliers == verify(astronaut_copy, photos["astronaut"]).inliers
    assert qf.size == (350, 350) and qf.points.shape == (len(qf), 2)


def test_orb_verifies_the_copy_and_rejects_unrelated(photos, astronaut_copy):
    v = verify(astronaut_copy, photos["astronaut"], features="orb")
    assert v.verified
    np.testing.assert_allclose(
        np.array(v.query_region), expected_region((512, 512), BOX, SIZE), atol=6.0
    )
    assert not verify(photos["coffee"], photos["astronaut"], features="orb").verified


def test_max_side_reports_original_coordinates(photos):
    big = cv2.resize(photos["astronaut"], (1400, 1400), interpolation=cv2.INTER_CUBIC)
    box, size = (300, 200, 700, 700), (420, 420)
    v = verify(crop_copy(big, box, size), big, max_side=512)
    assert v.verified
    np.testing.assert_allclose(
        np.array(v.query_region), expected_region(big.shape, box, size), atol=8.0
    )


def test_json_fields(photos, astronaut_copy):
    d = verify(astronaut_copy, photos["astronaut"], max_side=512).to_dict()
    assert set(d) == {
        "inliers",
        "matches",
        "flipped",
        "query_region",
        "reference_region",
        "homography",
        "verified",
    }
    assert d["verified"] is True and len(d["query_region"]) == 4
    assert np.array(d["homography"]).shape == (3, 3)
    json.dumps(d)


def test_bad_inputs_raise(photos):
    with pytest.raises(TypeError):
        extract(photos["astronaut"].astype(np.float32))
    with pytest.raises(ValueError):
        extract(photos["astronaut"][:, :, 0])
    with pytest.raises(ValueError):
        extract(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError):
        extract(photos["astronaut"], features="surf")
    with pytest.raises(ValueError):
        verify_features(extract(photos["coffee"], features="orb"), extract(photos["coffee"]))


def test_match_picture_shows_both_images(photos, astronaut_copy):
    ref = photos["astronaut"]
    v = verify(astronaut_copy, ref, max_side=512)
    pic = match_picture(astronaut_copy, to_tensor(ref), v, height=300)
    empty = match_picture(
        astronaut_copy, ref, Verification(0, 0, False, None, None, None), height=300
    )
    assert pic.shape == empty.shape and pic.dtype == np.uint8
    assert pic.shape[0] == 300 and pic.shape[2] == 3
    assert pic.shape[1] >= 300 + 300  # two square pictures side by side
    # Without a model the layout is just the two pictures, resized.
    np.testing.assert_array_equal(
        empty[:, :300], cv2.resize(astronaut_copy, (300, 300), interpolation=cv2.INTER_AREA)
    )
    np.testing.assert_array_equal(
        empty[:, -300:], cv2.resize(ref, (300, 300), interpolation=cv2.INTER_AREA)
    )
    # With one, lines and outlines are drawn over both pictures.
    changed = np.abs(pic.astype(int) - empty).sum(axis=2) > 0
    assert changed[:, :300].mean() > 0.01 and changed[:, -300:].mean() > 0.01
