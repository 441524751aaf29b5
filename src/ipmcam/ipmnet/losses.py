"""Training losses that score what the evaluation scores.

The evaluation judges a made-up face by the mean colour of regions in CIE Lab
(lips and lids against the reference, the skin against the input) and by the
fine texture of the skin (the spread of the Laplacian of L). A pixel L1 in
BGR treats a 2-unit shift of a whole cheek as no worse than noise on a few
pixels, yet the first is a visible change of skin tone and the second is
invisible. These terms put the same weight where the metrics do:

* ``region_colour_loss``: per region, the Lab distance between the mean
  colour of the output and of the target, under the soft region masks;
* ``texture_loss``: per face, how far the Laplacian energy of L in the skin
  moved away from the target's (log ratio; 0 when texture is kept);
* ``gradient_loss``: the output's luminance gradients against the source's,
  inside the regions (real references, whose pseudo-targets are loose).

Everything is differentiable torch on (N, 3, H, W) BGR images in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: sRGB (linear) to XYZ (D65), rows X, Y, Z over columns R, G, B
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def lab(img: torch.Tensor) -> torch.Tensor:
    """CIE Lab (N, 3, H, W) of BGR images in [-1, 1]: L in [0, 100], as ``ipmcam.ipmnet.color.to_lab``."""
    rgb = ((img.flip(1) + 1.0) * 0.5).clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp_min(1e-6) ** 2.4)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=img.dtype, device=img.device)
    xyz = torch.einsum("kc,nchw->nkhw", matrix, linear)
    xyz = xyz / torch.tensor(_WHITE, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-6) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def region_means(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) values averaged under each (N, R, H, W) soft region: (N, R, C)."""
    sums = torch.einsum("nrhw,nchw->nrc", weights, values)
    return sums / (weights.sum(dim=(2, 3)).unsqueeze(-1) + 1e-3)


def region_colour_loss(out: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                       region_weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of sum_r w_r * |mean Lab(out, r) - mean Lab(target, r)| (Euclidean, Lab units / 10).

    ``region_weights`` (R,): how much each region (lips, eye shadow, skin) counts.
    """
    diff = region_means(lab(out), masks) - region_means(lab(target), masks)  # (N, R, 3)
    dist = torch.sqrt((diff * diff).sum(-1) + 1e-4) / 10.0
    return (dist * region_weights.view(1, -1)).sum(1).mean()


def _laplacian_energy(img: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Root mean square of the Laplacian of L under a (N, 1, H, W) weight: (N,)."""
    lightness = lab(img)[:, :1]
    kernel = torch.tensor(_LAPLACIAN, dtype=img.dtype, device=img.device).view(1, 1, 3, 3)
    response = F.conv2d(F.pad(lightness, (1, 1, 1, 1), mode="replicate"), kernel)
    return torch.sqrt((response * response * weight).sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) + 1e-3) + 1e-4)


def texture_loss(out: torch.Tensor, target: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """|log| of the skin's Laplacian energy, output over target, averaged over the batch; skin (N, 1, H, W)."""
    return torch.log(_laplacian_energy(out, skin) / _laplacian_energy(target, skin)).abs().mean()


def _gray_gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = img.mean(dim=1, keepdim=True)
    return g[..., :, 1:] - g[..., :, :-1], g[..., 1:, :] - g[..., :-1, :]


def gradient_loss(out: torch.Tensor, source: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """L1 between the output's and the source's luminance gradients, weighted by ``where`` (N, 1, H, W)."""
    gx_o, gy_o = _gray_gradients(out)
    gx_x, gy_x = _gray_gradients(source)
    return ((gx_o - gx_x).abs() * where[..., :, 1:]).mean() + ((gy_o - gy_x).abs() * where[..., 1:, :]).mean()
