"""IPM-Net input preprocessing as tensor ops (differentiable, exported inside the generator graph).

The paper removes the makeup (and skin colour) that the identity encoder could
otherwise copy straight to the output, while keeping what identifies the
person: inside the makeup regions the image is greyed out and only its
high-frequency texture, taken by a differential filter, is added back.

With ``u`` the union of the region masks (per-pixel maximum over channels):

    b = x * (1 - u) + grey * u          greyed image
    t = L - GaussianBlur(L)             texture of the luminance L of x
    r = b + t * u                       preprocessed image

computed as ``r = x * (1 - u) + u * (grey + t)`` (the same expression, one
product fewer). ``grey`` is luminance-neutral per image: the mask-weighted
mean luminance of x, equal on all three channels. It keeps the exposure of
the scene (a dim room stays dim) and drops every colour and local contrast
that makeup could leave. The texture is taken from luminance for the same
reason: a per-channel high-pass would carry the colour edges of a lipstick.

Invariant, relied on by the background rule: wherever ``u == 0`` the product
``u * (grey + t)`` is zero and ``x * (1 - 0) == x``, so ``r == x`` bit for bit
in fp32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: luminance weights in BGR order (Rec. 601), the channel order of every crop
LUMA_BGR = (0.114, 0.587, 0.299)


def union_mask(masks: torch.Tensor) -> torch.Tensor:
    """Where any makeup may land: the maximum over mask channels, (N, 1, H, W)."""
    return masks.amax(dim=1, keepdim=True)


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``size``."""
    if size % 2 == 0 or size < 3:
        raise ValueError(f"texture kernel size must be odd and >= 3, got {size}")
    half = size // 2
    taps = torch.tensor([math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-half, half + 1)])
    return taps / taps.sum()


class Preprocess(nn.Module):
    """Grey out the makeup regions and add back the luminance texture (see the module docstring)."""

    def __init__(self, texture_sigma: float = 2.0, texture_kernel: int = 9, texture_gain: float = 1.0) -> None:
        super().__init__()
        taps = gaussian_kernel(texture_sigma, texture_kernel)
        # Fixed filters, saved with the module and exported as constants; never trained.
        self.register_buffer("luma", torch.tensor(LUMA_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("blur_x", taps.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("blur_y", taps.view(1, 1, -1, 1), persistent=False)
        self.texture_gain = texture_gain
        self.pad = texture_kernel // 2

    def luminance(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.luma).sum(dim=1, keepdim=True)

    def texture(self, lum: torch.Tensor) -> torch.Tensor:
        """High-frequency part of the luminance: itself minus a separable Gaussian blur.

        Reflect padding keeps the crop border from reading as an edge.
        """
        p = self.pad
        blurred = F.conv2d(F.pad(lum, (p, p, 0, 0), mode="reflect"), self.blur_x)
        blurred = F.conv2d(F.pad(blurred, (0, 0, p, p), mode="reflect"), self.blur_y)
        return (lum - blurred) * self.texture_gain

    def neutral_grey(self, lum: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Mask-weighted mean luminance per image, (N, 1, 1, 1); 0 (mid-grey) for an empty mask."""
        weight = u.sum(dim=(2, 3), keepdim=True)
        return (lum * u).sum(dim=(2, 3), keepdim=True) / (weight + 1e-6)

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Preprocessed image r (N, 3, H, W) from x in [-1, 1] and masks (N, C, H, W) in [0, 1]."""
        u = union_mask(masks)
        lum = self.luminance(x)
        fill = self.neutral_grey(lum, u) + self.texture(lum)
        return x * (1.0 - u) + u * fill
