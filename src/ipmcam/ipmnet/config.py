"""Model hyper-parameters: the paper's ``full`` network and the real-time ``lite`` one.

A config fully determines the layer shapes, so it is stored next to exported
graphs and weights (see ``ipmnet.weights``) and a model directory can be
rebuilt without guessing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class IPMNetConfig:
    """Hyper-parameters of the IPM-Net generator.

    ``dim`` is the identity encoder's first width; each of the ``n_downsample``
    strided convolutions doubles it, so the identity code has
    ``dim * 2**n_downsample`` channels at ``crop_size / 2**n_downsample``.
    ``separable`` swaps every spatial convolution except the output one for a
    depthwise + pointwise pair, which is what lets ``lite`` run per frame on a
    laptop CPU while keeping the paper's encoder/decoder layout.

    ``resample`` is how the networks change resolution: ``strided`` is the
    paper's (strided convolutions down, nearest upsampling + convolution up);
    ``shuffle`` folds each 2**n_downsample square of pixels into channels
    (pixel unshuffle) on the way in and unfolds the output the same way
    (pixel shuffle), so every convolution is a dense 3x3 at the code's
    resolution. Dense convolutions over many channels are what int8 kernels
    speed up; depthwise ones and full-resolution 3-channel ones are not.
    """

    dim: int = 64
    style_dim: int = 128
    mlp_dim: int = 256
    n_res: int = 4
    n_downsample: int = 2
    n_mlp: int = 3
    #: width of the style encoder's first layer and its number of strided convolutions
    style_channels: int = 64
    style_downsample: int = 4
    #: kernel sizes: first/last convolution (7 in the paper) and the decoder's upsampling convolutions (5)
    stem_kernel: int = 7
    up_kernel: int = 5
    separable: bool = False
    resample: str = "strided"
    #: normalisation inside the identity encoder: the paper's instance norm, or none (fewer float islands in int8)
    encoder_norm: str = "instance"
    #: grey the skin too in the preprocessing (the paper); if False only lips and eye shadow lose their colour
    #: and the skin keeps its own tone, which is the person's, with foundation and blush as the residual
    grey_skin: bool = True
    #: also give the decoder the input's own style code: semi-transparent makeup lands on the input's colours
    self_style: bool = False
    #: region-wise AdaIN: a scale and shift per makeup region, laid out by the masks (see ``networks.AdaIN``)
    region_style: bool = False
    #: the style code ends with each region's mean colour, and the identity encoder also reads a colour
    #: hint image: every region painted with the style's colour for it (see ``networks.Generator``)
    colour_hint: bool = False
    #: the greyed regions' base takes the style's region colour (needs ``colour_hint``): each greyed pixel
    #: keeps its own luminance relief, shifted so the region's mean is the style's colour; the network's
    #: residual then adds what a mean cannot (shading, gloss, the lid's gradient); see ``Generator.tint_image``
    tint_base: bool = False
    #: the lips are fully the generator's up to the lip line and not past it, the other regions where their
    #: feathered mask is 0.5 or more (the outer half of the ramp blends), and the style's region colours are
    #: measured where the masks are near 1 (weights m**4); see ``preprocess.channel_gate``
    sharp_regions: bool = False
    crop_size: int = 256
    n_masks: int = 3
    #: IPM-Net preprocessing: Gaussian high-pass that keeps the skin texture inside the greyed regions
    texture_sigma: float = 2.0
    texture_kernel: int = 9
    texture_gain: float = 1.0

    def __post_init__(self) -> None:
        if self.resample not in ("strided", "shuffle"):
            raise ValueError(f"unknown resample {self.resample!r}; choose strided or shuffle")
        if self.resample == "shuffle" and self.separable:
            raise ValueError("resample='shuffle' uses dense convolutions; separable must be False")
        if self.tint_base and not self.colour_hint:
            raise ValueError("tint_base takes the colours of the style code: it needs colour_hint")
        if self.learned_style_dim < 1:
            raise ValueError(f"style_dim {self.style_dim} leaves no room for a learned code beside the colour hint")

    @property
    def hint_dim(self) -> int:
        """Entries at the end of the style code that are region mean colours (3 per region), or 0."""
        return 3 * self.n_masks if self.colour_hint else 0

    @property
    def learned_style_dim(self) -> int:
        """Entries of the style code that the style encoder learns."""
        return self.style_dim - self.hint_dim

    @property
    def content_channels(self) -> int:
        """Channels of the identity code."""
        return self.dim * 2**self.n_downsample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IPMNetConfig:
        """Rebuild a config from ``to_dict`` output; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown IPM-Net config keys: {', '.join(unknown)}")
        return cls(**data)


CONFIGS: dict[str, IPMNetConfig] = {
    # The paper's network (IJCAI 2020): for training on a GPU and GPU inference.
    "full": IPMNetConfig(),
    # Same encoders, AdaIN decoder and residual output, built for a CPU and
    # for int8: pixel (un)shuffle by 4, so all convolutions are dense 3x3
    # ones at 64x64; no norm in the identity encoder; the skin keeps its own
    # tone; the decoder also sees the input's style, its AdaIN acts per
    # region (lips, lids, skin), and the style's region colours reach the
    # identity encoder as a hint image and as the colour of the greyed
    # regions' base. ~1.1 M parameters.
    "lite": IPMNetConfig(
        dim=16,
        style_dim=64,
        mlp_dim=128,
        n_res=3,
        n_downsample=2,
        style_channels=32,
        style_downsample=4,
        stem_kernel=3,
        resample="shuffle",
        encoder_norm="none",
        grey_skin=False,
        self_style=True,
        region_style=True,
        colour_hint=True,
        tint_base=True,
        sharp_regions=True,
    ),
}


def get_config(name: str) -> IPMNetConfig:
    """The named config (``full`` or ``lite``)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown IPM-Net config {name!r}; choose one of {', '.join(CONFIGS)}") from None
