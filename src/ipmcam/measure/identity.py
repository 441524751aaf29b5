"""Identity distance with dlib's face-recognition network (the ``eval`` extra).

dlib's ResNet maps a face to a 128-d descriptor; two photos of the same
person are closer than ``SAME_PERSON`` (0.6, Euclidean) in dlib's own
benchmark. Makeup should leave a face its wearer's: the evaluation measures
the distance between a made-up crop and the bare crop it came from.

Faces are measured on the canonical crops (256x256, aligned by the live
pipeline). dlib needs a face box and five landmarks: the box comes from dlib's
HOG detector on the *input* crop (the canonical face box when it finds
nothing) and is reused for the output, so both images are measured on the
same face; the five landmarks are fitted on each image by dlib's 5-point
shape predictor, and the descriptor is computed on dlib's standard aligned
150x150 face chip.

dlib and the model files are imported only when an ``IdentityModel`` is made.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

#: dlib's same-person threshold on descriptor distance
SAME_PERSON = 0.6
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
#: median dlib detector box (left, top, right, bottom) on canonical crops, as fractions of the side
CANONICAL_BOX = (0.137, 0.211, 0.836, 0.836)

Box = tuple[int, int, int, int]


class IdentityUnavailable(RuntimeError):
    """dlib or face_recognition_models is not installed; the message says how to install them."""


def model_paths() -> tuple[Path, Path]:
    """(5-point shape predictor, ResNet) files shipped by ``face_recognition_models``.

    These are the files ``pose_predictor_five_point_model_location()`` and
    ``face_recognition_model_location()`` name; they are found from the
    package's location because its ``__init__`` needs ``pkg_resources``,
    which current setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityUnavailable("face_recognition_models is not installed: pip install -e '.[eval]'")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    paths = (models / SHAPE_MODEL, models / RECOGNITION_MODEL)
    for path in paths:
        if not path.is_file():
            raise IdentityUnavailable(f"{path} is missing: reinstall face-recognition-models")
    return paths


def available() -> str | None:
    """None when identity distances can be computed, else why not."""
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed: pip install -e '.[eval]'"
    try:
        model_paths()
    except IdentityUnavailable as exc:
        return str(exc)
    return None


class IdentityModel:
    """dlib face descriptors and distances for BGR uint8 face crops."""

    def __init__(self) -> None:
        reason = available()
        if reason:
            raise IdentityUnavailable(reason)
        import dlib

        shape, recognition = model_paths()
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(shape))
        self._net = dlib.face_recognition_model_v1(str(recognition))
        self._detector = dlib.get_frontal_face_detector()

    def face_box(self, image: np.ndarray) -> Box:
        """The largest dlib detection (left, top, right, bottom), else the canonical crop's face box."""
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        found = list(self._detector(rgb, 0))
        if found:
            r = max(found, key=lambda d: d.width() * d.height())
            return r.left(), r.top(), r.right(), r.bottom()
        h, w = image.shape[:2]
        x0, y0, x1, y1 = CANONICAL_BOX
        return round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)

    def descriptor(self, image: np.ndarray, box: Box | None = None) -> np.ndarray:
        """128-d descriptor (float64) of the face in a BGR uint8 image, inside ``box`` (found when None)."""
        box = self.face_box(image) if box is None else box
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rect = self._dlib.rectangle(*(int(v) for v in box))
        shape = self._shape(rgb, rect)
        return np.asarray(self._net.compute_face_descriptor(rgb, shape), dtype=np.float64)

    def distance(self, image: np.ndarray, other: np.ndarray, box: Box | None = None) -> float:
        """Descriptor distance between two crops of one face, both measured in ``image``'s face box."""
        box = self.face_box(image) if box is None else box
        return float(np.linalg.norm(self.descriptor(image, box) - self.descriptor(other, box)))
