"""Big inputs are bounded: faces are found and aligned on a copy at most WORK_SIDE long; the output keeps full size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ipmcam.face.align import WORK_SIDE, downscaled, from_scaled_frame
from ipmcam.face.reference import read_reference
from ipmcam.realtime import blend
from ipmcam.realtime.blend import BAND_ROWS, add_delta
from ipmcam.realtime.pipeline import Pipeline
from tests.conftest import clip_frames
from tests.test_pipeline import RedLips

BIG = 6000


@pytest.fixture(scope="module")
def frame(shared_data) -> np.ndarray:
    return clip_frames(shared_data, "d18.mp4", 1)[0]


def _changed(reference_image, image: np.ndarray) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Which pixels the pipeline changes, and the sizes its tracker was given."""
    pipeline = Pipeline(None, RedLips(), reference=reference_image)
    seen: list[tuple[int, ...]] = []
    tracker = pipeline.tracker

    class Spy:
        def __call__(self, image, timestamp):
            seen.append(image.shape)
            return tracker(image, timestamp)

        def close(self) -> None:
            tracker.close()

    pipeline.tracker = Spy()
    out, faces = pipeline.process(image, 0.0)
    pipeline.close()
    assert faces == 1 and out.shape == image.shape
    return np.any(out != image, axis=-1), seen


def test_a_huge_reference_is_decoded_no_larger_than_work_size(tmp_path, reference_image) -> None:
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), cv2.resize(reference_image, (BIG, BIG)))
    image = read_reference(path)
    assert max(image.shape[:2]) <= WORK_SIDE and image.shape[0] == image.shape[1]
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), reference_image)
    assert np.array_equal(read_reference(small), reference_image)  # a photo that fits is read whole


def test_a_huge_photo_is_tracked_small_and_made_up_at_full_size(frame, reference_image) -> None:
    big = cv2.resize(frame, (BIG, BIG), interpolation=cv2.INTER_LINEAR)
    changed_big, seen = _changed(reference_image, big)
    assert seen == [(WORK_SIDE, WORK_SIDE, 3)]  # found on the small copy...
    changed, _ = _changed(reference_image, frame)
    # ...and drawn at full size where the same face is made up at the clip's own size.
    back = cv2.resize(changed_big.astype(np.float32), frame.shape[1::-1], interpolation=cv2.INTER_AREA) > 0.5
    assert (back & changed).sum() / (back | changed).sum() > 0.9


def test_scaled_alignment_maps_back_to_the_full_frame() -> None:
    image = np.zeros((4000, 3000, 3), np.uint8)
    work, scale = downscaled(image)
    assert work.shape[:2] == (WORK_SIDE, round(3000 * WORK_SIDE / 4000)) and scale == WORK_SIDE / 4000
    mat = np.array([[0.5, 0.1, 10.0], [-0.1, 0.5, 20.0]])  # found on the copy
    full_point = np.array([1000.0, 2000.0, 1.0])
    assert from_scaled_frame(mat, scale) @ full_point == pytest.approx(mat @ np.r_[full_point[:2] * scale, 1.0])
    assert downscaled(np.zeros((1080, 1920, 3), np.uint8))[1] == 1.0  # full HD passes as it is


def test_blending_in_bands_equals_one_pass(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    delta = rng.normal(0, 20, (256, 256, 3)).astype(np.float32)
    mask = np.ones((256, 256), np.float32)
    s = 256 / 1500  # a face 1500 px tall: several bands
    mat = np.array([[s, 0, -100 * s], [0, s, -50 * s]])
    frame = rng.integers(0, 256, (1700, 1700, 3), dtype=np.uint8)
    banded = frame.copy()
    add_delta(banded, delta, mask, mat)
    monkeypatch.setattr(blend, "BAND_ROWS", 10**6)
    whole = frame.copy()
    add_delta(whole, delta, mask, mat)
    assert 1500 > 2 * BAND_ROWS and np.array_equal(banded, whole) and not np.array_equal(banded, frame)
