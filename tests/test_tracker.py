"""Face tracking: real faces found (close-up crops too), a dog refused, tracks kept across frames."""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face.tracker import FaceTracker
from tests.conftest import clip_frames


def test_close_up_crops_and_stills_are_found(shared_data) -> None:
    paths = sorted((shared_data / "faces" / "makeup").glob("*.png")) + [shared_data / "stills" / "d8.jpg"]
    with FaceTracker(static=True, smooth=False) as tracker:
        found = [len(tracker(cv2.imread(str(p)), 0.0)) for p in paths]
    assert found == [1] * len(paths)


def test_a_dog_is_not_a_face(shared_data) -> None:
    dog = cv2.imread(str(shared_data / "stills" / "s25.jpg"))
    with FaceTracker(static=True) as still, FaceTracker() as video:
        assert still(dog, 0.0) == []
        assert all(video(dog, i / 30) == [] for i in range(3))
        # The mesh alone does fit the dog: the detector is what refuses it.
        assert len(still.detect(dog)) == 1


def test_landmarks_are_pixels_and_tracks_persist(shared_data) -> None:
    frames = clip_frames(shared_data, "d18.mp4", 5)
    with FaceTracker() as tracker:
        tracks = [tracker(f, i / 30) for i, f in enumerate(frames)]
    assert all(len(t) == 1 for t in tracks)
    assert len({t[0].track_id for t in tracks}) == 1
    lm = tracks[-1][0].landmarks
    assert lm.shape == (478, 2) and lm.dtype == np.float64
    assert 0 <= lm[:, 0].min() and lm[:, 0].max() <= frames[0].shape[1]


def test_a_stream_that_starts_again_gets_new_tracks(shared_data) -> None:
    frames = clip_frames(shared_data, "d18.mp4", 3)
    with FaceTracker() as tracker:
        first = [tracker(f, 5.0 + i / 30)[0].track_id for i, f in enumerate(frames)]
        again = tracker(frames[0], 0.0)  # timestamps restart: a source restarted or swapped
    assert len(set(first)) == 1
    assert len(again) == 1 and again[0].track_id != first[0]
