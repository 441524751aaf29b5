"""The evaluation's data: held-out photos and synthetic pairs whose exact target is known."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.face.masks import region_masks
from ipmcam.ipmnet.dataset import is_held_out
from ipmcam.ipmnet.render import MakeupParams, make_pair


def held_out_photos(data: Path, folder: str, limit: int) -> list[tuple[str, np.ndarray]]:
    """(name, BGR image) of the held-out photos in faces/<folder>, sorted by name; ``limit`` 0 keeps all."""
    paths = [p for p in sorted((data / "faces" / folder).glob("*.png")) if is_held_out(p.stem)]
    if limit > 0:
        paths = paths[:limit]
    out = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is not None:
            out.append((path.stem, image))
    return out


def synthetic_pairs(held: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """Exact (source, reference, target) crops on held-out identities with random looks, reproducible by seed.

    Sources are bare faces; the reference face is any other held-out
    identity. Identities are drawn uniformly, so a long clip does not crowd
    out the photos.
    """
    rng = np.random.default_rng(seed)
    names = np.asarray(held.identity).astype(str)
    bare_ids = sorted(set(names[~held.makeup]))
    all_ids = sorted(set(names))
    if not bare_ids or len(all_ids) < 2:
        return []
    out = []
    for _ in range(count):
        src_id = bare_ids[rng.integers(len(bare_ids))]
        others = [i for i in all_ids if i != src_id]
        ref_id = others[rng.integers(len(others))]
        i = int(rng.choice(np.flatnonzero((names == src_id) & ~held.makeup)))
        j = int(rng.choice(np.flatnonzero(names == ref_id)))
        look = MakeupParams.random(rng)
        pair = make_pair(held.crops[i], held.landmarks[i], held.crops[j], held.landmarks[j], look)
        size = held.crops.shape[1]
        out.append({
            "source": src_id, "source_index": i, "reference": ref_id, "reference_index": j,
            "look": look.to_dict(), "pair": pair,
            "source_masks": region_masks(held.landmarks[i], size),
            "reference_masks": region_masks(held.landmarks[j], size),
        })
    return out
