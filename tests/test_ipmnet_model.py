"""IPM-Net model: shapes, the background-invariance rule, style mixing, discriminator, weights."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ipmcam.errors import EngineError  # noqa: E402
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN  # noqa: E402
from ipmcam.ipmnet.config import CONFIGS, IPMNetConfig, get_config  # noqa: E402
from ipmcam.ipmnet.networks import (  # noqa: E402
    AdaIN,
    MultiScaleDiscriminator,
    build_generator,
    count_parameters,
    with_ones_plane,
)
from ipmcam.ipmnet.preprocess import Preprocess, channel_gate, region_gate, union_mask  # noqa: E402
from ipmcam.ipmnet.weights import load_weights, save_weights  # noqa: E402


@pytest.fixture(scope="module")
def lite():
    torch.set_num_threads(1)
    return build_generator(get_config("lite"), seed=0).eval()


def to_tensors(faces) -> tuple[torch.Tensor, torch.Tensor]:
    """Real aligned crops as the model sees them: float32 [-1, 1] BGR NCHW, masks (N, 3, S, S)."""
    x = np.stack([crop for crop, _ in faces]).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    m = np.stack([mask for _, mask in faces])
    return torch.from_numpy(x), torch.from_numpy(m)


def test_shapes_and_dtypes(lite) -> None:
    cfg = lite.cfg
    x, m = torch.rand(2, 3, 256, 256) * 2 - 1, torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        style = lite.encode_style(x, m)
        code = lite.encode_identity(lite.preprocess(x, m), m, lite.colour_hint_image(style, m))
        out = lite(x, m, style, torch.ones(2))
    assert style.shape == (2, cfg.style_dim) and style.dtype == torch.float32
    assert code.shape == (2, cfg.content_channels, 64, 64)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_full_config_is_the_papers() -> None:
    full = get_config("full")
    assert (full.dim, full.style_dim, full.mlp_dim, full.n_res, full.n_downsample) == (64, 128, 256, 4, 2)
    gen = build_generator(full, seed=0).eval()
    with torch.no_grad():  # fully convolutional: a small crop checks the wiring cheaply
        code = gen.encode_identity(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
        out = gen(torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64), torch.zeros(1, 128), torch.ones(1, 1))
    assert code.shape == (1, 256, 16, 16)  # the paper's 256-channel identity code at S/4
    assert out.shape == (1, 3, 64, 64)


def test_parameter_counts() -> None:
    counts = {name: count_parameters(build_generator(cfg, seed=0)) for name, cfg in CONFIGS.items()}
    print(f"generator parameters: lite {counts['lite']:,}, full {counts['full']:,}")
    assert 500_000 <= counts["lite"] <= 1_500_000
    assert counts["full"] > 10_000_000


def test_background_invariance_on_real_faces(lite, aligned_faces) -> None:
    """Outside the mask union the output is the input, bit for bit, whatever the weights and style."""
    x, m = to_tensors(aligned_faces)
    u = union_mask(m).expand_as(x)
    outside = u == 0
    assert outside.any() and (~outside).any()
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(len(x), lite.cfg.style_dim, generator=gen)
    with torch.no_grad():
        r = lite.preprocess(x, m)
        out = lite(x, m, ref, torch.full((len(x),), 0.8))
    assert torch.equal(r[outside], x[outside])
    assert torch.equal(out[outside], x[outside])
    inside = u > 0.5
    assert (out[inside] - x[inside]).abs().mean() > 1e-2  # and the makeup regions do change


def test_preprocess_greys_the_masked_regions(aligned_faces) -> None:
    x, m = to_tensors(aligned_faces[:2])
    m = (m > 0.5).float()  # hard masks, so whole regions are fully greyed
    pre = Preprocess()
    r = pre(x, m)
    full = (union_mask(m) == 1).squeeze(1)
    assert full.sum() > 1000
    # Fully masked pixels carry only grey + luminance texture: no colour left.
    assert torch.allclose(r[:, 0][full], r[:, 1][full]) and torch.allclose(r[:, 1][full], r[:, 2][full])
    assert not torch.allclose(x[:, 0][full], x[:, 2][full])
    assert torch.equal(pre(x, torch.zeros_like(m)), x)


def test_preprocess_can_keep_the_skin_tone(aligned_faces) -> None:
    """With grey_channels = lips + eye shadow (the lite config) skin-only pixels pass through untouched."""
    x, m = to_tensors(aligned_faces[:2])
    m = (m > 0.5).float()
    r = Preprocess(grey_channels=(LIPS, EYE_SHADOW))(x, m)
    skin_only = ((m[:, SKIN] == 1) & (m[:, LIPS] == 0) & (m[:, EYE_SHADOW] == 0)).unsqueeze(1).expand_as(x)
    lips = (m[:, LIPS] == 1)
    assert skin_only.sum() > 1000 and lips.sum() > 100
    assert torch.equal(r[skin_only], x[skin_only])
    assert torch.allclose(r[:, 0][lips], r[:, 2][lips]) and not torch.allclose(x[:, 0][lips], x[:, 2][lips])


def test_tint_base_gives_each_greyed_region_the_style_colour_and_keeps_its_relief(lite, aligned_faces) -> None:
    """lite's base: lips and lids take the style's colour for them on average, every pixel keeps its own
    luminance relief, and the skin is left as it is."""
    cfg = lite.cfg
    assert cfg.tint_base
    x, m = to_tensors(aligned_faces[:2])
    m = (m > 0.5).float()  # hard masks: each region's mean is exact
    with torch.no_grad():
        own = lite.encode_style(x, m)
        style = own.clone()
        style[:, cfg.learned_style_dim:] = torch.rand(2, cfg.hint_dim, generator=torch.Generator().manual_seed(3)) - 0.5
        r = lite.preprocess(x, m, lite.tint_image(style, own, m))
    colours = style[:, cfg.learned_style_dim:].view(2, 3, 3)
    for region in (LIPS, EYE_SHADOW):
        weight = m[:, region:region + 1]
        mean = (r * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
        torch.testing.assert_close(mean, colours[:, region], atol=2e-3, rtol=0)
        for i in range(2):
            inside = weight[i, 0] == 1
            for a, b in ((0, 1), (1, 2)):  # channels differ by a constant: the relief is the luminance's
                assert (r[i, a] - r[i, b])[inside].std() < 1e-4
            assert (x[i, 0] - x[i, 2])[inside].std() > 1e-2
    skin_only = ((m[:, SKIN] == 1) & (m[:, LIPS] == 0) & (m[:, EYE_SHADOW] == 0)).unsqueeze(1).expand_as(x)
    assert torch.equal(r[skin_only], x[skin_only])
    with pytest.raises(ValueError, match="needs colour_hint"):
        IPMNetConfig(tint_base=True)


def test_sharp_gates_paint_the_lips_up_to_their_edge_and_the_lids_over_the_inner_half(aligned_faces) -> None:
    """With ``sharp`` the lips' gate is 1 from a mask of 2/3 and 0 up to 1/3, the other regions' is twice their
    mask clipped to 1; the greyed base fills what the gates cover, and where the masks are 0 the input stays
    bit for bit."""
    x, m = to_tensors(aligned_faces[:2])
    gates = torch.cat([channel_gate(m, c, sharp=True) for c in range(m.shape[1])], dim=1)
    assert torch.equal(torch.cat([channel_gate(m, c, sharp=False) for c in range(m.shape[1])], dim=1), m)
    lips, shadow = m[:, LIPS], m[:, EYE_SHADOW]
    assert torch.equal(gates[:, LIPS][lips >= 2 / 3], torch.ones_like(lips[lips >= 2 / 3]))
    assert not gates[:, LIPS][lips <= 1 / 3].any()
    ramp = (lips > 1 / 3) & (lips < 2 / 3)
    assert ramp.any()
    torch.testing.assert_close(gates[:, LIPS][ramp], 3 * lips[ramp] - 1)
    torch.testing.assert_close(gates[:, EYE_SHADOW], (2 * shadow).clamp(max=1))
    assert torch.equal(region_gate(m, sharp=True), gates.amax(dim=1, keepdim=True))
    soft, sharp = Preprocess(sharp=False, grey_channels=(LIPS, EYE_SHADOW)), Preprocess(sharp=True, grey_channels=(LIPS, EYE_SHADOW))
    r_soft, r_sharp = soft(x, m), sharp(x, m)
    grey, texture = sharp.grey_and_texture(sharp.luminance(x))
    core = (gates[:, [LIPS, EYE_SHADOW]].amax(dim=1, keepdim=True) == 1).expand_as(x)
    torch.testing.assert_close(r_sharp[core], (grey + texture).expand_as(x)[core])
    assert (r_soft[core] - r_sharp[core]).abs().max() > 0.05  # the soft gate leaves some of x there
    bare = (union_mask(m[:, [LIPS, EYE_SHADOW]]) == 0).expand_as(x)
    assert torch.equal(r_sharp[bare], x[bare])


def test_lite_is_dense_convolutions_at_a_quarter_resolution(lite) -> None:
    """Pixel (un)shuffle: every learned convolution of the per-frame path is dense (int8-friendly) and runs
    at S/4 or below, and the decoder sees the input's own style beside the mixed one."""
    convs = [m for net in (lite.enc_id, lite.dec) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.groups == 1 and c.kernel_size == (3, 3) for c in convs)
    assert lite.cfg.self_style and lite.mlp.net[0].in_features == 2 * lite.cfg.style_dim
    with pytest.raises(ValueError, match="unknown resample"):
        IPMNetConfig(resample="bilinear")
    with pytest.raises(ValueError, match="separable must be False"):
        IPMNetConfig(resample="shuffle", separable=True)


def test_region_adain_puts_each_regions_style_where_its_mask_is() -> None:
    channels, regions = 4, 3
    norm = AdaIN(channels, regions)
    assert norm.n_params == 2 * channels * regions
    x = torch.randn(1, channels, 4, 4)
    gamma = torch.randn(1, regions, channels)
    beta = torch.randn(1, regions, channels)
    params = torch.cat([gamma.flatten(1), beta.flatten(1)], dim=1)
    layout = torch.zeros(1, regions, 4, 4)
    layout[0, LIPS, :2] = 1.0  # top half: lips; bottom-left quarter: nothing; bottom-right: half skin
    layout[0, SKIN, 2:, 2:] = 0.5
    out = norm(x, params, with_ones_plane(layout))
    plain = torch.nn.functional.instance_norm(x)
    lips = plain[..., :2, :] * (1 + gamma[0, LIPS].view(1, -1, 1, 1)) + beta[0, LIPS].view(1, -1, 1, 1)
    torch.testing.assert_close(out[..., :2, :], lips)
    torch.testing.assert_close(out[..., 2:, :2], plain[..., 2:, :2])  # no region: plain instance norm
    skin = plain[..., 2:, 2:] * (1 + 0.5 * gamma[0, SKIN].view(1, -1, 1, 1)) + 0.5 * beta[0, SKIN].view(1, -1, 1, 1)
    torch.testing.assert_close(out[..., 2:, 2:], skin)


def test_lite_decoder_styles_each_region_separately(lite) -> None:
    assert lite.cfg.region_style
    blocks = lite.dec.blocks
    per_block = 2 * 2 * 3 * lite.cfg.content_channels  # 2 norms x (scale, shift) x 3 regions, per channel
    assert lite.mlp.net[-1].out_features == sum(b.n_params for b in blocks) == per_block * len(blocks)


def test_style_code_ends_with_region_colours_and_the_hint_paints_them(lite, aligned_faces) -> None:
    cfg = lite.cfg
    assert cfg.colour_hint and cfg.hint_dim == 9 and cfg.learned_style_dim == cfg.style_dim - 9
    crop, masks = aligned_faces[0]
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    m = torch.from_numpy(masks)[None].float()
    with torch.no_grad():
        style = lite.encode_style(x, m)
        hint = lite.colour_hint_image(style, m)
    colours = style[0, cfg.learned_style_dim:].view(3, 3)
    for region in (LIPS, EYE_SHADOW, SKIN):
        inside = masks[region] > 0.5
        weight = m[0, region] ** 4  # sharp_regions: measured where the mask is near 1, not on the feather
        expected = (x[0] * weight).sum(dim=(1, 2)) / weight.sum()
        torch.testing.assert_close(colours[region], expected, atol=1e-3, rtol=0)
        # where only this region's mask is 1, the hint is exactly that region's colour
        only = inside & (masks.sum(axis=0) == masks[region])
        pixels = hint[0][:, torch.from_numpy(only & (masks[region] == 1))]
        torch.testing.assert_close(pixels, colours[region][:, None].expand_as(pixels))
    assert not hint[0][:, torch.from_numpy(masks.max(axis=0) == 0)].any()  # nothing outside the regions


def test_alpha_blends_the_styles(lite) -> None:
    x, m = torch.rand(2, 3, 96, 96) * 2 - 1, torch.rand(2, 3, 96, 96)  # fully convolutional: small is enough
    ref_a, ref_b = torch.randn(2, lite.cfg.style_dim), torch.randn(2, lite.cfg.style_dim)
    alpha = torch.tensor([0.25, 0.75])
    with torch.no_grad():
        own = lite.encode_style(x, m)
        mixed = lite.mix_styles(x, m, ref_a, alpha)
        assert torch.allclose(mixed, alpha[:, None] * ref_a + (1 - alpha[:, None]) * own, atol=1e-6)
        # alpha = 0 ignores the reference; alpha = 1 follows it; (N,) and (N, 1) mean the same.
        zero = torch.zeros(2, 1)
        assert torch.equal(lite(x, m, ref_a, zero), lite(x, m, ref_b, zero))
        assert not torch.equal(lite(x, m, ref_a, torch.ones(2)), lite(x, m, ref_b, torch.ones(2)))
        assert torch.equal(lite(x, m, ref_a, alpha), lite(x, m, ref_a, alpha[:, None]))


def test_multiscale_discriminator() -> None:
    disc = MultiScaleDiscriminator(c_in=3, dim=16, n_layers=4, n_scales=3)
    real, fake = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256, requires_grad=True)
    outs = disc(real)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    loss_d, loss_g = disc.loss_d(real, fake), disc.loss_g(fake)
    assert loss_d.ndim == 0 and torch.isfinite(loss_d) and loss_g.ndim == 0
    loss_g.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_config_round_trip_and_errors() -> None:
    cfg = get_config("lite")
    assert IPMNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown IPM-Net config keys: bogus"):
        IPMNetConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="choose one of"):
        get_config("huge")


def test_weights_round_trip(lite, tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(lite, path, lite.cfg)
    other = load_weights(build_generator(lite.cfg, seed=1), path)
    for (name, a), b in zip(lite.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(EngineError, match="does not fit this model config"):
        load_weights(build_generator(get_config("full"), seed=0), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EngineError, match="unreadable"):
        load_weights(build_generator(lite.cfg), path)
