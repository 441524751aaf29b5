"""Built-in looks that need no photo: presets/*.toml, each a ``MakeupParams`` dictionary.

A preset is data, not an image. It is rendered once, with the procedural
renderer, onto a bare face bundled with the product (the first frame of the
demo clip), and that made-up photo then goes through the same reference path
as any photo a user supplies: face found, aligned, encoded to a style.

``bare`` is the empty look; ``--remove`` copies it, so makeup regions move
towards the bundled bare face's own lips, lids and skin.

Also here: turning the ``--reference/--preset/--lips/--eyes/--skin`` options
into what the pipeline takes, and the ``ipmcam presets`` command.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.errors import BadReferenceError, UserError
from ipmcam.face import align
from ipmcam.face.reference import align_face
from ipmcam.face.tracker import FaceTracker
from ipmcam.ipmnet.render import MakeupParams, paint_region, render
from ipmcam.media import IMAGE_SUFFIXES, video_frames
from ipmcam.realtime.blend import add_delta
from ipmcam.realtime.config import load_toml
from ipmcam.resources import DEMO_CLIP, PRESET_DIR

BARE_FACE_CLIP = DEMO_CLIP
BARE_FACE_FRAME = 0  # frontal, eyes open, no visible makeup
BARE = "bare"
#: the per-region reference options, in the order the mask channels use
REGION_OPTIONS = ("lips", "eyes", "skin")


@dataclass(frozen=True)
class Preset:
    """A named look: a one-line description and the renderer's parameters."""

    name: str
    description: str
    params: Any  # ipmnet.render.MakeupParams

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, **self.params.to_dict()}


def _toml(path: Path) -> dict[str, Any]:
    return load_toml(path)


def parse_preset(path: str | Path) -> Preset:
    """One preset file; a one-line error naming the file when it is not a valid look."""
    path = Path(path)
    data = _toml(path)
    description = str(data.pop("description", ""))
    for component in data.values():
        if isinstance(component, dict) and "color" in component:  # either spelling
            component["colour"] = component.pop("color")
    try:
        params = MakeupParams.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"preset {path}: {exc}") from None
    return Preset(path.stem, description, params)


def available(folder: Path = PRESET_DIR) -> dict[str, Preset]:
    """Every preset by name (file stem), ``bare`` first, the rest alphabetical."""
    presets = {p.stem: parse_preset(p) for p in sorted(folder.glob("*.toml"))}
    return dict(sorted(presets.items(), key=lambda kv: (kv[0] != BARE, kv[0])))


def names(folder: Path = PRESET_DIR) -> list[str]:
    return sorted((p.stem for p in folder.glob("*.toml")), key=lambda n: (n != BARE, n))


def load(name: str, folder: Path = PRESET_DIR) -> Preset:
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(names(folder))} (see `ipmcam presets`)")
    return parse_preset(path)


@dataclass(frozen=True)
class _BareFace:
    frame: np.ndarray  #: the whole video frame, BGR uint8
    crop: np.ndarray  #: its canonical face crop
    landmarks: np.ndarray  #: face-mesh points in crop pixels
    masks: np.ndarray  #: region masks of the crop
    mat: np.ndarray  #: frame -> crop


@lru_cache(maxsize=1)
def bare_face() -> _BareFace:
    """The bundled bare face every preset is rendered on (found once per process)."""
    frame = next(video_frames(BARE_FACE_CLIP, start=BARE_FACE_FRAME, limit=1), None)
    if frame is None:
        raise UserError(f"cannot read the bundled face from {BARE_FACE_CLIP}")
    with FaceTracker(static=True, smooth=False) as tracker:
        faces = tracker(frame, 0.0)
    if not faces:
        raise UserError(f"no face in frame {BARE_FACE_FRAME} of {BARE_FACE_CLIP}")
    crop, masks, mat = align_face(frame, faces[0].landmarks)
    for array in (frame, crop, masks, mat):
        array.setflags(write=False)
    return _BareFace(frame, crop, align.transform_points(faces[0].landmarks, mat), masks, mat)


def render_crop(preset: Preset | str) -> np.ndarray:
    """The preset worn by the bundled face: its canonical crop (S, S, 3) BGR uint8."""
    preset = load(preset) if isinstance(preset, str) else preset
    face = bare_face()
    return render(face.crop, face.landmarks, preset.params, masks=face.masks)


def look_image(preset: Preset | str | Any) -> np.ndarray:
    """The bundled face's whole frame wearing a look (a preset, its name, or ``MakeupParams``)."""
    if isinstance(preset, MakeupParams):
        preset = Preset("look", "", preset)
    face = bare_face()
    delta = render_crop(preset).astype(np.float32) - face.crop.astype(np.float32)
    image = face.frame.copy()
    add_delta(image, delta, paint_region(face.masks).astype(np.float32), face.mat)
    return image


@lru_cache(maxsize=16)
def _preset_image(name: str, mtime: float) -> np.ndarray:
    image = look_image(name)
    image.setflags(write=False)
    return image


def preset_image(name: str) -> np.ndarray:
    """A photo of the bundled face wearing the preset: a reference like any other (cached per file version)."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        load(name)  # raises the one-line error
    return _preset_image(name, path.stat().st_mtime)


# --------------------------------------------------------------------------- references from the command line


def reference_images(folder: Path) -> list[Path]:
    """Photos in a folder (not recursive), by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resolve(text: str | Path) -> Path | np.ndarray:
    """A reference option's value: an existing photo, or a preset name (rendered)."""
    path = Path(text)
    if path.is_file():
        return path
    if path.is_dir():
        photos = reference_images(path)
        if not photos:
            raise BadReferenceError(f"reference folder {path}: no photos in it (JPEG or PNG)")
        return photos[0]
    if (PRESET_DIR / f"{text}.toml").is_file():
        return preset_image(str(text))
    raise BadReferenceError(f"reference {text}: file not found, and no preset has that name "
                            f"(presets: {', '.join(names())})")


@dataclass
class ReferencePlan:
    """What to copy first, and what the next/previous-reference keys cycle through."""

    initial: Any  #: a path, an image, or {region: path or image} for per-region mixing
    cycle: list[tuple[str, Any]]  #: (label, reference or zero-argument function giving one), ``initial`` first

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.cycle]


def _lazy_preset(name: str) -> Any:
    return lambda: preset_image(name)


def plan_references(args: argparse.Namespace, with_presets: bool = True) -> ReferencePlan:
    """The reference options as the pipeline wants them.

    Precedence: ``--remove`` (the bare preset), per-region ``--lips/--eyes/--skin``
    (a region without one takes ``--reference``/``--preset``, else stays as
    it is), ``--preset``, ``--reference`` (a photo, or a folder whose photos
    the hotkeys cycle). The cycle continues through the built-in presets.
    """
    remove = getattr(args, "remove", False)
    preset = getattr(args, "preset", None)
    reference = getattr(args, "reference", None)
    regions = {r: getattr(args, r, None) for r in REGION_OPTIONS if getattr(args, r, None) is not None}
    if preset is not None:
        load(preset)  # an unknown name fails before anything starts
    cycle: list[tuple[str, Any]] = []
    if remove:
        initial: Any = preset_image(BARE)
        cycle.append(("remove makeup", initial))
    else:
        base: Any = None
        if preset is not None:
            base = preset_image(preset)
            cycle.append((f"preset {preset}", base))
        elif reference is not None:
            reference = Path(reference)
            if reference.is_dir():
                photos = reference_images(reference)
                if not photos:
                    raise BadReferenceError(f"reference folder {reference}: no photos in it (JPEG or PNG)")
                cycle.extend((p.name, p) for p in photos)
                base = photos[0]
            else:
                base = resolve(reference)
                cycle.append((reference.name, base))
        if regions:
            mix = {r: resolve(v) for r, v in regions.items()}
            if base is not None:
                mix = {r: mix.get(r, base) for r in REGION_OPTIONS}
            label = " ".join(f"{r}={Path(str(v)).name}" for r, v in regions.items())
            cycle.insert(0, (f"mix {label}", mix))
            initial = mix
        elif base is not None:
            initial = base
        else:
            raise UserError("choose a reference: --reference PHOTO|FOLDER, --preset NAME "
                            f"({', '.join(names())}), --lips/--eyes/--skin, or --remove")
    if with_presets:
        taken = {label for label, _ in cycle}
        cycle.extend((f"preset {n}", _lazy_preset(n)) for n in names()
                     if n != BARE and f"preset {n}" not in taken)
    return ReferencePlan(initial, cycle)


# --------------------------------------------------------------------------- gallery and the `presets` command


def _label(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    """The tile with a caption strip below it."""
    w = tile.shape[1]
    strip = np.full((22 + 18 * (len(lines) - 1) + 10, w, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        scale, thick = (0.6, 2) if i == 0 else (0.4, 1)
        while cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] > w - 10 and len(line) > 4:
            line = line[:-4] + "..."
        cv2.putText(strip, line, (6, 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40), thick, cv2.LINE_AA)
    return np.vstack([tile, strip])


def portrait(preset: Preset) -> np.ndarray:
    """A square of the bundled frame around the face wearing ``preset`` (no stretched crop borders)."""
    face = bare_face()
    image = look_image(preset)
    s = face.crop.shape[0]
    corners = align.transform_points(np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64), align.invert(face.mat))
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    side = int(min(max(x1 - x0, y1 - y0), *image.shape[:2]))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(cx - side / 2, 0, image.shape[1] - side))
    top = int(np.clip(cy - side / 2, 0, image.shape[0] - side))
    return image[top:top + side, left:left + side]


def contact_sheet(presets: dict[str, Preset] | None = None, tile: int = 256, columns: int = 4) -> np.ndarray:
    """Every preset worn by the bundled face, labelled with its name: one BGR image."""
    presets = presets if presets is not None else available()
    tiles = []
    for preset in presets.values():
        face = cv2.resize(portrait(preset), (tile, tile), interpolation=cv2.INTER_AREA)
        tiles.append(_label(face, [preset.name, preset.description]))
    height = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.full((height - t.shape[0], tile, 3), 255, np.uint8)]) for t in tiles]
    columns = max(1, min(columns, len(tiles)))
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    pad = 6
    rows = [np.hstack([np.pad(t, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
                       for t in tiles[i:i + columns]]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def cmd_presets(args: argparse.Namespace) -> int:
    presets = available()
    for preset in presets.values():
        print(f"{preset.name:<14} {preset.description}")
    if args.sheet is not None:
        sheet = contact_sheet(presets, tile=args.tile, columns=args.columns)
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.sheet), sheet):
            raise UserError(f"cannot write {args.sheet}")
        print(f"sheet: {args.sheet} ({sheet.shape[1]}x{sheet.shape[0]})", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add the ``presets`` subcommand to the ipmcam CLI."""
    p = sub.add_parser("presets", help="list the built-in looks; --sheet writes a gallery image",
                       description=f"Built-in looks (files in {PRESET_DIR}); use one with --preset NAME.")
    p.add_argument("--sheet", type=Path, help="write a labelled thumbnail sheet (PNG) of every preset")
    p.add_argument("--tile", type=int, default=256, help="thumbnail size in pixels (default 256)")
    p.add_argument("--columns", type=int, default=4, help="thumbnails per row (default 4)")
    p.set_defaults(handler=cmd_presets)
