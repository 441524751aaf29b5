"""Training losses that score what the evaluation scores."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ipmcam.face.masks import SKIN
from ipmcam.ipmnet.color import to_lab
from ipmcam.ipmnet.losses import gradient_loss, lab, region_colour_loss, texture_loss


def _tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0


def test_lab_matches_the_colour_module(aligned_faces) -> None:
    crop = aligned_faces[0][0]
    ours = lab(_tensor(crop))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, to_lab(crop), atol=0.5)


def test_region_colour_loss_scores_a_shift_of_a_region_mean(aligned_faces) -> None:
    crop, masks = aligned_faces[0]
    x, m = _tensor(crop), torch.from_numpy(masks)[None]
    weights = torch.tensor([1.0, 1.0, 1.0])
    assert float(region_colour_loss(x, x, m, weights)) < 1e-2
    tinted = crop.astype(np.float32)
    tinted[masks[SKIN] > 0.5] += (0, 10, 25)  # the skin turns warmer and pinker
    shifted = _tensor(np.clip(tinted, 0, 255).astype(np.uint8))
    loss = region_colour_loss(shifted.requires_grad_(), x, m, weights)
    assert loss.item() > 0.3
    loss.backward()
    assert shifted.grad is not None and shifted.grad.abs().sum() > 0
    only_lips = torch.tensor([1.0, 0.0, 0.0])  # the skin's shift counts where the skin's weight says
    assert region_colour_loss(shifted.detach(), x, m, only_lips).item() < 0.3 * loss.item()


def test_texture_loss_is_zero_when_kept_and_grows_when_smoothed(aligned_faces) -> None:
    crop, masks = aligned_faces[0]
    x = _tensor(crop)
    skin = torch.from_numpy((masks[SKIN] > 0.5).astype(np.float32))[None, None]
    assert float(texture_loss(x, x, skin)) < 1e-4
    smooth = _tensor(cv2.GaussianBlur(crop, (0, 0), 1.5))
    assert float(texture_loss(smooth, x, skin)) > 0.2


def test_gradient_loss_only_looks_where_asked(aligned_faces) -> None:
    crop, _ = aligned_faces[0]
    x = _tensor(crop)
    other = _tensor(cv2.GaussianBlur(crop, (0, 0), 2.0))
    everywhere, nowhere = torch.ones_like(x[:, :1]), torch.zeros_like(x[:, :1])
    assert float(gradient_loss(other, x, everywhere)) > 0 and float(gradient_loss(other, x, nowhere)) == 0
