"""IPM-Net: identity encoder EI, style encoder ES, MLP, AdaIN decoder G, generator and discriminator.

Layout follows "Real-World Automatic Makeup via Identity Preservation Makeup
Net" (IJCAI 2020):

* EI encodes the *preprocessed* image r (``ipmnet.preprocess``) into an
  identity code (conv blocks with instance norm, ``n_downsample`` strided
  convolutions, ``n_res`` residual blocks).
* ES encodes a face and its region masks into a makeup style code; it is
  shared by the source and the reference and has no normalisation, since
  the style lives in exactly the statistics a norm would remove.
* An MLP maps the style code to the scale and shift of every AdaIN layer of
  the decoder G, which turns the identity code back into an image.
* The generator's output is a residual on r, gated by the mask union u:
  ``out = r + u * G(EI(r), s)``.

Background invariance: where u == 0, r == x exactly (see the preprocess
module) and the residual is multiplied by zero, so the output equals the
input bit for bit outside the makeup regions, whatever the weights. The final
clamp to [-1, 1] keeps that, as inputs already lie in [-1, 1].

AdaIN is an ``InstanceNorm2d`` without affine parameters followed by an
explicit per-sample scale and shift, which exports to ONNX as
InstanceNormalization + Mul + Add and parses in TensorRT.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ipmcam.face.regions import EYE_SHADOW, LIPS
from ipmcam.ipmnet.config import IPMNetConfig
from ipmcam.ipmnet.preprocess import Preprocess, region_gate, union_mask


def spatial_conv(c_in: int, c_out: int, kernel: int, stride: int, separable: bool) -> nn.Module:
    """A k x k convolution with zero "same" padding (for odd kernels), optionally depthwise-separable."""
    padding = (kernel - 1) // 2 if kernel % 2 else (kernel - stride) // 2
    if not separable:
        return nn.Conv2d(c_in, c_out, kernel, stride, padding)
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1),
    )


def with_ones_plane(layout: torch.Tensor) -> torch.Tensor:
    """Region masks (N, R, H, W) followed by a plane of ones: (N, R + 1, H, W) (see ``AdaIN.forward``)."""
    return F.pad(layout, (0, 0, 0, 0, 0, 1), value=1.0)  # one Pad node; no shape arithmetic in the graph


def paint_regions(values: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """Per-region vectors (N, R, C) spread over an image by its region masks (N, R, H, W): (N, C, H, W),
    each pixel the mask-weighted sum ``sum_k m_k(p) values_k``.

    The shape comes from the masks, never from a feature map: in an int8
    graph a Shape node reading a convolution's output is a second reader of
    it, which keeps onnxruntime from fusing that convolution.
    """
    n, _, h, w = layout.shape
    return torch.bmm(values.transpose(1, 2), layout.flatten(2)).view(n, -1, h, w)


class ConvBlock(nn.Sequential):
    """Convolution, optional normalisation, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, separable: bool, norm: str) -> None:
        layers: list[nn.Module] = [spatial_conv(c_in, c_out, kernel, stride, separable)]
        if norm == "instance":
            layers.append(nn.InstanceNorm2d(c_out))
        elif norm != "none":
            raise ValueError(f"unknown norm {norm!r}")
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual block of the identity encoder, with instance norm (the paper's) or without."""

    def __init__(self, channels: int, separable: bool, norm: str = "instance") -> None:
        super().__init__()
        layers = [ConvBlock(channels, channels, 3, 1, separable, norm), spatial_conv(channels, channels, 3, 1, separable)]
        if norm == "instance":
            layers.append(nn.InstanceNorm2d(channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _SpaceToDepth(torch.autograd.Function):
    """``pixel_unshuffle`` that exports as ONNX SpaceToDepth plus a channel Gather (export only)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: int, channels: int) -> torch.Tensor:
        return F.pixel_unshuffle(x, factor)

    @staticmethod
    def symbolic(g: Any, x: Any, factor: int, channels: int) -> Any:
        # SpaceToDepth puts the block offset first and the channel last; the Gather restores torch's order.
        order = [(i * factor + j) * channels + c for c in range(channels) for i in range(factor) for j in range(factor)]
        blocks = g.op("SpaceToDepth", x, blocksize_i=factor)
        return g.op("Gather", blocks, g.op("Constant", value_t=torch.tensor(order, dtype=torch.int64)), axis_i=1)


class Unshuffle(nn.PixelUnshuffle):
    """Pixel unshuffle of a ``channels``-channel input, exported without a 6-D Transpose.

    The TorchScript exporter writes ``pixel_unshuffle`` as Reshape, a 6-D
    Transpose and Reshape, slow in onnxruntime's CPU Transpose on the
    identity and style encoders' 256x256 inputs. SpaceToDepth and a Gather
    over 48-144 channels give the same tensor, exactly, and made the lite
    generator 4 to 7% cheaper per face (``docs/benchmarks.md``); TensorRT
    parses both. The export then folds the Gather into the convolution that
    reads it (``ipmnet.export.fold_channel_gathers``).
    """

    def __init__(self, factor: int, channels: int) -> None:
        super().__init__(factor)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _SpaceToDepth.apply(x, self.downscale_factor, self.channels)
        return super().forward(x)


class AdaIN(nn.Module):
    """Instance norm whose scale and shift come from the style: ``IN(x) * (1 + gamma) + beta``.

    The ``1 +`` keeps a freshly initialised MLP close to plain instance norm.
    With ``regions`` > 0 (region-wise AdaIN) the style gives one scale and
    shift per channel *and makeup region*, and each pixel takes the mix of
    them its region masks say: ``gamma(p) = sum_k m_k(p) gamma_k``. The paper's
    single scale and shift per channel must reach the lips through features
    that happen to be lips-only; a small network trained briefly learns that
    weakly and paints an average lip colour whatever the reference. Laid out
    by the masks, the lips' shift lands on the lips by construction.
    """

    def __init__(self, channels: int, regions: int = 0) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.channels = channels
        self.regions = regions

    @property
    def n_params(self) -> int:
        """Style parameters this layer consumes: a scale and a shift per channel (and region)."""
        return 2 * self.channels * max(1, self.regions)

    def forward(self, x: torch.Tensor, params: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
        """``layout``: only with ``regions``, the region masks at x's resolution followed by a plane of
        ones, (N, regions + 1, H, W) (``with_ones_plane``).

        The ones plane paints the ``1 +`` of the scale in the same product as
        the regions' scales, ``1 + sum_k m_k gamma_k = sum_k m_k gamma_k + 1 * 1``,
        which saves onnxruntime an Add over the (C, H, W) map in each of the
        decoder's six AdaIN layers (docs/benchmarks.md has the whole graph's gain).
        """
        if not self.regions:
            gamma, beta = params.unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            return self.norm(x) * (1.0 + gamma) + beta
        per_region = params.reshape(-1, 2, self.regions, self.channels)  # (N, scale/shift, R, C)
        # a row of ones (scale) or zeros (shift) for the ones plane, as Pad nodes of constant size
        scale = paint_regions(F.pad(per_region[:, 0], (0, 0, 0, 1), value=1.0), layout)
        shift = paint_regions(F.pad(per_region[:, 1], (0, 0, 0, 1)), layout)
        return self.norm(x) * scale + shift


class AdaINResBlock(nn.Module):
    """Residual block whose two norms are AdaIN layers (decoder)."""

    def __init__(self, channels: int, separable: bool, regions: int = 0) -> None:
        super().__init__()
        self.conv1 = spatial_conv(channels, channels, 3, 1, separable)
        self.norm1 = AdaIN(channels, regions)
        self.conv2 = spatial_conv(channels, channels, 3, 1, separable)
        self.norm2 = AdaIN(channels, regions)

    @property
    def n_params(self) -> int:
        """Style parameters this block consumes: those of its two norms."""
        return self.norm1.n_params + self.norm2.n_params

    def forward(self, x: torch.Tensor, params: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
        # sizes as constants: ``chunk`` traces into shape arithmetic that onnxruntime runs every frame
        p1, p2 = params.split([self.norm1.n_params, self.norm2.n_params], dim=1)
        h = F.relu(self.norm1(self.conv1(x), p1, layout))
        return x + self.norm2(self.conv2(h), p2, layout)


class IdentityEncoder(nn.Module):
    """EI: preprocessed image and region masks -> identity code (N, dim * 2^n_down, S / 2^n_down, S / 2^n_down).

    The masks go in beside the image so the decoder knows which pixels are
    lips, lids or skin, instead of guessing it from a greyed face.
    """

    def __init__(self, cfg: IPMNetConfig) -> None:
        super().__init__()
        c_in, norm = 3 + cfg.n_masks + (3 if cfg.colour_hint else 0), cfg.encoder_norm
        ch = cfg.content_channels
        layers: list[nn.Module]
        if cfg.resample == "shuffle":
            factor = 2**cfg.n_downsample
            layers = [Unshuffle(factor, c_in), ConvBlock(c_in * factor * factor, ch, 3, 1, False, norm)]
        else:
            layers = [ConvBlock(c_in, cfg.dim, cfg.stem_kernel, 1, False, norm)]
            layers += [ConvBlock(cfg.dim * 2**i, cfg.dim * 2 ** (i + 1), 4, 2, cfg.separable, norm)
                       for i in range(cfg.n_downsample)]
        layers += [ResBlock(ch, cfg.separable, norm) for _ in range(cfg.n_res)]
        self.net = nn.Sequential(*layers)

    def forward(self, r: torch.Tensor, masks: torch.Tensor, hint: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(torch.cat([r, masks] if hint is None else [r, masks, hint], dim=1))


class StyleEncoder(nn.Module):
    """ES: image and region masks -> style code (N, style_dim).

    Convolutional features of the masked image are averaged inside each
    region separately (lips, eye shadow, skin) and the per-region vectors are
    mapped to the code. A single global average would drown the lips, a few
    percent of the face, in the skin; pooling per region keeps each region's
    colour its own slot in the code. With ``resample == "shuffle"`` the first
    2**n_downsample of the downsampling is a pixel unshuffle.
    """

    def __init__(self, cfg: IPMNetConfig) -> None:
        super().__init__()
        ch, c_in = cfg.style_channels, 3 + cfg.n_masks
        layers: list[nn.Module]
        strided = cfg.style_downsample
        if cfg.resample == "shuffle":
            factor = 2**cfg.n_downsample
            layers = [Unshuffle(factor, c_in), ConvBlock(c_in * factor * factor, ch, 3, 1, False, "none")]
            strided -= cfg.n_downsample
        else:
            layers = [ConvBlock(c_in, ch, cfg.stem_kernel, 1, False, "none")]
        for i in range(strided):
            c_out = ch * 2 if i < 2 else ch
            layers.append(ConvBlock(ch, c_out, 4, 2, cfg.separable, "none"))
            ch = c_out
        self.features = nn.Sequential(*layers)
        self.scale = 2**cfg.style_downsample
        self.head = nn.Linear(ch * cfg.n_masks, cfg.learned_style_dim)
        self.colour_hint = cfg.colour_hint
        #: region colours are weighted by the masks squared this many times: 0 (the masks), or with
        #: ``sharp_regions`` 2 (masks**4), which measures them where the masks are near 1, not on the feather
        #: where lips and lids blend into skin
        self.colour_squarings = 2 if cfg.sharp_regions else 0

    @staticmethod
    def region_means(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) values averaged inside each of the (N, R, h, w) soft regions: (N, R, C)."""
        sums = torch.bmm(weights.flatten(2), values.flatten(2).transpose(1, 2))
        return sums / (weights.flatten(2).sum(dim=2, keepdim=True) + 1e-4)

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        feats = self.features(torch.cat([x * union_mask(masks), masks], dim=1))  # (N, C, h, w)
        small = F.avg_pool2d(masks, self.scale)  # (N, R, h, w): each region's share of a feature cell
        code = self.head(self.region_means(feats, small).flatten(1))
        if not self.colour_hint:
            return code
        weights = masks
        for _ in range(self.colour_squarings):  # m**4 as (m*m)**2: two Muls, not onnxruntime's generic Pow
            weights = weights * weights
        return torch.cat([code, self.region_means(x, weights).flatten(1)], dim=1)


class MLP(nn.Module):
    """Style code -> all AdaIN parameters of the decoder, (N, n_out)."""

    def __init__(self, style_dim: int, hidden: int, n_out: int, n_layers: int) -> None:
        super().__init__()
        if n_layers < 2:
            raise ValueError("the style MLP needs at least 2 layers")
        dims = [style_dim] + [hidden] * (n_layers - 1)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(hidden, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class Decoder(nn.Module):
    """G: identity code + AdaIN parameters -> residual image (N, 3, S, S), linear output.

    The upsampling blocks have no normalisation: an instance norm would erase
    the colour statistics AdaIN just injected, and a layer norm over
    (C, H, W) is a million-element reduction whose fp32 rounding differs
    between runtimes by ~1e-4, more than the export parity budget.
    """

    def __init__(self, cfg: IPMNetConfig) -> None:
        super().__init__()
        ch = cfg.content_channels
        regions = cfg.n_masks if cfg.region_style else 0
        self.blocks = nn.ModuleList(AdaINResBlock(ch, cfg.separable, regions) for _ in range(cfg.n_res))
        self.code_scale = 2**cfg.n_downsample
        self.regions = regions
        up: list[nn.Module] = []
        if cfg.resample == "shuffle":
            factor = 2**cfg.n_downsample
            up += [ConvBlock(ch, ch, 3, 1, False, "none"), nn.Conv2d(ch, 3 * factor * factor, 3, 1, 1),
                   nn.PixelShuffle(factor)]
        else:
            for _ in range(cfg.n_downsample):
                up += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    ConvBlock(ch, ch // 2, cfg.up_kernel, 1, cfg.separable, "none"),
                ]
                ch //= 2
            up.append(nn.Conv2d(ch, 3, cfg.stem_kernel, 1, cfg.stem_kernel // 2))
        self.up = nn.Sequential(*up)

    @property
    def output(self) -> nn.Conv2d:
        """The last convolution, whose weights' dtype is the network's."""
        return next(m for m in reversed(self.up) if isinstance(m, nn.Conv2d))

    @property
    def n_adain_params(self) -> int:
        return sum(block.n_params for block in self.blocks)

    def forward(self, code: torch.Tensor, adain_params: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        h = code
        # region-wise AdaIN: each region's share of every code cell, (N, R, h, w), and the plane of ones
        layout = with_ones_plane(F.avg_pool2d(masks, self.code_scale)) if self.regions else None
        sizes = [block.n_params for block in self.blocks]
        for block, params in zip(self.blocks, adain_params.split(sizes, dim=1)):
            h = block(h, params, layout)
        return self.up(h)


class Generator(nn.Module):
    """The per-frame IPM-Net generator.

    ``forward(x, masks, ref_style, alpha)``:
      s_self = ES(x, masks)
      s = alpha * ref_style + (1 - alpha) * s_self    (paper: S = a S_ref + (1 - a) S_self)
      r = preprocess(x, masks)                       preprocess(x, masks, tint(s, s_self)) with ``tint_base``
      out = clamp(r + u * G(EI(r), s), -1, 1)       G(EI(r), [s, s_self]) with ``self_style``,
                                                    EI(r, hint(s)) with ``colour_hint``

    Background invariance: out == x exactly wherever the mask union u is 0,
    for any weights (r == x there and the residual is gated by u).

    ``half_core()`` switches the learned networks to fp16 while the
    preprocessing, the style mix and the final composition stay fp32, which
    keeps that invariance exact in half precision too.
    """

    def __init__(self, cfg: IPMNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grey = None if cfg.grey_skin else (LIPS, EYE_SHADOW)
        self.preprocess = Preprocess(cfg.texture_sigma, cfg.texture_kernel, cfg.texture_gain, grey, cfg.sharp_regions)
        self.enc_id = IdentityEncoder(cfg)
        self.enc_style = StyleEncoder(cfg)
        self.dec = Decoder(cfg)
        mlp_in = cfg.style_dim * (2 if cfg.self_style else 1)
        self.mlp = MLP(mlp_in, cfg.mlp_dim, self.dec.n_adain_params, cfg.n_mlp)

    @property
    def core_dtype(self) -> torch.dtype:
        return self.dec.output.weight.dtype

    def half_core(self) -> Generator:
        """Run EI, ES, the MLP and G in fp16 (see the class docstring); returns self."""
        for net in (self.enc_id, self.enc_style, self.mlp, self.dec):
            net.half()
        return self

    def encode_style(self, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """ES: style code (N, style_dim) of faces y in [-1, 1] with their masks; always fp32."""
        dt = self.core_dtype
        return self.enc_style(y.to(dt), masks.to(dt)).float()

    def encode_identity(self, r: torch.Tensor, masks: torch.Tensor, hint: torch.Tensor | None = None) -> torch.Tensor:
        """EI on an already preprocessed image, its masks and (``colour_hint``) the colour hint image."""
        dt = self.core_dtype
        return self.enc_id(r.to(dt), masks.to(dt), None if hint is None else hint.to(dt))

    def colour_hint_image(self, style: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Each region painted with the style's mean colour for it, (N, 3, S, S) fp32.

        A style code is mixed linearly (intensity, per-region mixing), and so
        is this image: half the intensity is half-way between the person's
        colours and the reference's. Handing the colours over as an image
        leaves the network the local job of putting them on with the face's
        own shading and texture, which a small one learns in minutes, where
        reading them out of a global code was learned weakly.
        """
        colours = style[:, self.cfg.learned_style_dim:].reshape(-1, self.cfg.n_masks, 3)  # (N, R, 3)
        return paint_regions(colours, masks)

    def decode(self, code: torch.Tensor, style: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """G with the MLP: the residual (N, 3, S, S) fp32 for an identity code, a style code and the masks."""
        dt = self.core_dtype
        return self.dec(code, self.mlp(style.to(dt)), masks.to(dt)).float()

    def mix_styles(
        self, x: torch.Tensor, masks: torch.Tensor, ref_style: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        """Makeup intensity: alpha (N,) or (N, 1) blends the reference style with the input's own."""
        return self._mix(ref_style, self.encode_style(x, masks), alpha)

    @staticmethod
    def _mix(ref_style: torch.Tensor, own_style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        a = alpha.reshape(-1, 1).to(ref_style.dtype)
        return a * ref_style + (1.0 - a) * own_style

    def tint_image(self, style: torch.Tensor, own: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The colour base's shift (N, 3, S, S): in each greyed region, the style's colour for it minus the
        luminance of the input's own colour there, painted by the masks (zero outside them).

        Added to the greyed luminance, it gives each greyed region the style's
        mean colour while every pixel keeps its own relief, as a colour
        transfer by moments would. The paper's flat grey base leaves the
        residual to carry the whole colour; a small network trained briefly
        brought the lips only part of the way (lips ΔE2000 6.3 to the
        reference on held-out webcam frames, ``docs/eval.md``). With the
        colour in the base, the residual's job is what a mean cannot do: the
        reference's shading, gloss and gradient.
        """
        regions = self.preprocess.grey_channels or list(range(self.cfg.n_masks))
        start = self.cfg.learned_style_dim
        colours = style[:, start:].reshape(-1, self.cfg.n_masks, 3)[:, regions]
        own_colours = own[:, start:].reshape(-1, self.cfg.n_masks, 3)[:, regions]
        own_luma = (own_colours * self.preprocess.luma.view(1, 1, 3)).sum(dim=2, keepdim=True)
        layout = masks[:, regions]
        # The full shift wherever a region reaches (the greyed regions do not overlap): the preprocessing
        # already fades the base in by the masks, and a second fade left a feathered lip half its colour.
        return paint_regions(colours - own_luma, layout) / (layout.sum(dim=1, keepdim=True) + 1e-3)

    def forward(
        self, x: torch.Tensor, masks: torch.Tensor, ref_style: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        u = region_gate(masks, self.cfg.sharp_regions)
        own = self.encode_style(x, masks)
        s = self._mix(ref_style, own, alpha)
        tint = self.tint_image(s, own, masks) if self.cfg.tint_base else None
        r = self.preprocess(x, masks, tint)
        hint = self.colour_hint_image(s, masks) if self.cfg.colour_hint else None
        if self.cfg.self_style:
            s = torch.cat([s, own], dim=1)
        residual = self.decode(self.encode_identity(r, masks, hint), s, masks)
        return (r + u * residual).clamp(-1.0, 1.0)


class PatchDiscriminator(nn.Module):
    """PatchGAN at one scale: strided 4x4 convolutions with LeakyReLU, a 1-channel score map."""

    def __init__(self, c_in: int, dim: int, n_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = c_in, dim
        for _ in range(n_layers):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch_in, ch = ch, min(ch * 2, dim * 8)
        layers.append(nn.Conv2d(ch_in, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """LSGAN multi-scale discriminator (training only).

    ``n_scales`` PatchGANs see the image at full, half, quarter... resolution,
    so one judges fine texture and another the overall colour layout.
    """

    def __init__(self, c_in: int = 3, dim: int = 64, n_layers: int = 4, n_scales: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(c_in, dim, n_layers) for _ in range(n_scales))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = self.down(x)
            outs.append(disc(x))
        return outs

    def loss_d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """LSGAN discriminator loss: real patches towards 1, fakes (detached) towards 0."""
        real_outs, fake_outs = self(real), self(fake.detach())
        return sum(((r - 1) ** 2).mean() + (f**2).mean() for r, f in zip(real_outs, fake_outs))

    def loss_g(self, fake: torch.Tensor) -> torch.Tensor:
        """LSGAN generator loss: fake patches towards 1."""
        return sum(((f - 1) ** 2).mean() for f in self(fake))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_generator(cfg: IPMNetConfig, seed: int | None = None) -> Generator:
    """A generator with fresh weights; ``seed`` makes them reproducible (tests, export smoke runs)."""
    if seed is None:
        return Generator(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(cfg)
