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
    crop_size: int = 256
    n_masks: int = 3
    #: IPM-Net preprocessing: Gaussian high-pass that keeps the skin texture inside the greyed regions
    texture_sigma: float = 2.0
    texture_kernel: int = 9
    texture_gain: float = 1.0

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
    # Same structure, narrower and separable, 3x3 first/last convolutions
    # (the 7x7 ones at full resolution cost more than all residual blocks
    # together on a CPU): ~0.62 M parameters, about 60 ms per 256x256 frame
    # with onnxruntime fp32 on two CPU cores.
    "lite": IPMNetConfig(
        dim=32,
        style_dim=64,
        mlp_dim=128,
        n_res=4,
        n_downsample=2,
        style_channels=16,
        style_downsample=4,
        stem_kernel=3,
        up_kernel=5,
        separable=True,
    ),
}


def get_config(name: str) -> IPMNetConfig:
    """The named config (``full`` or ``lite``)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown IPM-Net config {name!r}; choose one of {', '.join(CONFIGS)}") from None
