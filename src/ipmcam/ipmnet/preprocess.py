"""IPM-Net input preprocessing as tensor ops (differentiable, exported inside the generator graph).

The paper removes the makeup (and skin colour) that the identity encoder could
otherwise copy straight to the output, while keeping what identifies the
person: inside the makeup regions the image is greyed out and its texture,
taken by a differential filter, is added back.

With ``u`` the union of the greyed region masks (per-pixel maximum over
channels: all of them in the paper; lips and eye shadow only when the skin
keeps its own tone, see ``IPMNetConfig.grey_skin``) and ``L`` the luminance of x (equal on all three channels):

    b = GaussianBlur(L)                 the region greyed: colourless, its broad shading kept
    t = L - GaussianBlur(L)             texture: the differential filter's high frequencies
    r = x * (1 - u) + u * (b + t)       preprocessed image

Colour, which is what makeup is, is gone from the regions; shading and
texture, which are what identify a face and its lighting, stay. The paper's
greyed base is flat; keeping the broad shading instead means a small
generator trained for minutes on a CPU only has to learn colour, not to
rebuild the relief of a face, and the lighting of the scene survives.
Luminance rather than per-channel filtering keeps a lipstick's colour edges
out of the texture.

With ``tint_base`` (lite) a tint image is added to the greyed base, so the
regions start from the style's colour rather than from grey (see
``Generator.tint_image``); it is zero outside the greyed regions.

Invariant, relied on by the background rule: wherever ``u == 0`` the product
``u * (b + t)`` is zero and ``x * (1 - 0) == x``, so ``r == x`` bit for bit
in fp32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ipmcam.face.masks import SHARP_GAIN
from ipmcam.face.regions import LIPS

#: luminance weights in BGR order (Rec. 601), the channel order of every crop
LUMA_BGR = (0.114, 0.587, 0.299)


def channel_max(planes: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Per-pixel maximum of (N, 1, H, W) planes, as a chain of elementwise maxima.

    Not ``amax`` over a channel axis: onnxruntime's ReduceMax across the
    channels of a 256x256 map is a strided reduction, slower than the
    elementwise Max chain, and the generator takes three such maxima per
    frame (docs/benchmarks.md has the whole graph's gain). Maxima are
    exact: the result is the same bit for bit.
    """
    out = planes[0]
    for plane in planes[1:]:
        out = torch.maximum(out, plane)
    return out


def union_mask(masks: torch.Tensor) -> torch.Tensor:
    """Where any makeup may land: the maximum over mask channels, (N, 1, H, W)."""
    return channel_max(masks.split(1, dim=1))


def channel_gate(masks: torch.Tensor, channel: int, sharp: bool) -> torch.Tensor:
    """How much of each pixel region ``channel``'s colour owns, (N, 1, H, W): its mask, or with ``sharp``
    the mask through ``face.masks.sharp_weight`` (the lips up to the lip line and not past it, the other
    regions twice their mask, clipped to 1).

    The masks are feathered (a Gaussian of 1% of the side), so on thin lips
    and lids few pixels reach 1, and gated by the masks themselves the
    person's own colour shows through most of the region: a lipstick put on
    in full looks half-transparent, and the network would have to learn to
    divide its residual by the mask to undo it. Zero stays zero, so the
    background rule holds as before.
    """
    mask = masks[:, channel:channel + 1]
    if not sharp:
        return mask
    if channel == LIPS:
        return (SHARP_GAIN * (mask - 0.5) + 0.5).clamp(0.0, 1.0)
    return (2.0 * mask).clamp(max=1.0)


def region_gate(masks: torch.Tensor, sharp: bool, channels: list[int] | None = None) -> torch.Tensor:
    """How much of each pixel is the generator's, (N, 1, H, W): the largest ``channel_gate`` over
    ``channels`` (None: all of them)."""
    channels = list(range(masks.shape[1])) if channels is None else channels
    return channel_max([channel_gate(masks, c, sharp) for c in channels])


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``size``."""
    if size % 2 == 0 or size < 3:
        raise ValueError(f"texture kernel size must be odd and >= 3, got {size}")
    half = size // 2
    taps = torch.tensor([math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-half, half + 1)])
    return taps / taps.sum()


class Preprocess(nn.Module):
    """Grey out the makeup regions and add back the luminance texture (see the module docstring)."""

    def __init__(self, texture_sigma: float = 2.0, texture_kernel: int = 9, texture_gain: float = 1.0,
                 grey_channels: tuple[int, ...] | None = None, sharp: bool = False) -> None:
        """``grey_channels``: the mask channels whose regions lose their colour (None: all of them);
        ``sharp``: greyed in full over the regions' gates (``channel_gate``)."""
        super().__init__()
        self.grey_channels = list(grey_channels) if grey_channels is not None else None
        self.sharp = sharp
        taps = gaussian_kernel(texture_sigma, texture_kernel)
        # Fixed filters, saved with the module and exported as constants; never trained.
        self.register_buffer("luma", torch.tensor(LUMA_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("blur_x", taps.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("blur_y", taps.view(1, 1, -1, 1), persistent=False)
        self.texture_gain = texture_gain
        self.pad = texture_kernel // 2

    def luminance(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) luminance of x (N, 3, H, W), as a (1 x 3) by (3 x HW) product per image.

        onnxruntime runs that MatMul faster than a Mul by the weights and a
        ReduceSum across channels.
        """
        n, _, h, w = x.shape
        return torch.matmul(self.luma.view(1, 3), x.flatten(2)).view(n, 1, h, w)

    def grey_and_texture(self, lum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, t): the luminance's separable Gaussian blur and what the blur removed.

        Reflect padding keeps the crop border from reading as an edge.
        """
        p = self.pad
        blurred = F.conv2d(F.pad(lum, (p, p, 0, 0), mode="reflect"), self.blur_x)
        blurred = F.conv2d(F.pad(blurred, (0, 0, p, p), mode="reflect"), self.blur_y)
        return blurred, (lum - blurred) * self.texture_gain

    def forward(self, x: torch.Tensor, masks: torch.Tensor, tint: torch.Tensor | None = None) -> torch.Tensor:
        """Preprocessed image r (N, 3, H, W) from x in [-1, 1] and masks (N, C, H, W) in [0, 1].

        ``tint`` (N, 3, H, W), zero outside the greyed regions, is added to
        the greyed base: the colour base of ``Generator.tint_image``.
        """
        u = region_gate(masks, self.sharp, self.grey_channels)
        grey, texture = self.grey_and_texture(self.luminance(x))
        base = grey + texture if tint is None else grey + texture + tint
        return x * (1.0 - u) + u * base
