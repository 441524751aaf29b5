"""TensorRT backend against onnxruntime on a tiny exported model (needs tensorrt and a CUDA GPU)."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

pytest.importorskip("tensorrt", reason="the TensorRT backend needs the tensorrt package")
pytest.importorskip("torch", reason="exporting the test model needs PyTorch")

from ipmcam.engines.engine_cache import EngineCache  # noqa: E402
from ipmcam.engines.ipmnet_engine import IPMNetEngine  # noqa: E402
from ipmcam.engines.loader import cuda_device_count, load  # noqa: E402
from ipmcam.engines.tensorrt_backend import TensorRTBackend  # noqa: E402
from ipmcam.ipmnet.config import get_config  # noqa: E402
from ipmcam.ipmnet.export import export_model  # noqa: E402
from ipmcam.ipmnet.networks import build_generator  # noqa: E402
from ipmcam.ipmnet.weights import read_manifest  # noqa: E402

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

TINY = dataclasses.replace(get_config("lite"), dim=8, style_dim=16, mlp_dim=32, n_res=2, crop_size=64)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    if cuda_device_count() == 0:
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("tiny")
    export_model(build_generator(TINY, seed=0), "tiny", root, fp16=True)
    return root


def inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    masks = np.zeros((n, 3, 64, 64), np.float32)
    masks[:, 0, 20:40, 16:48] = rng.random((n, 20, 32))
    return crops, masks


@pytest.mark.parametrize("precision, tolerance", [("fp32", 0.05), ("fp16", 1.5)])
def test_tensorrt_matches_onnxruntime(tiny_model, tmp_path, caplog, precision, tolerance) -> None:
    crops, masks = inputs(3)  # 3 is inside the 1..4 batch profile but not its optimum
    reference = load(tiny_model, backend="onnxruntime")
    style = reference.encode_style(crops[0], masks[0])
    expected = reference.run(crops, masks, style, 0.8)

    manifest = read_manifest(tiny_model)
    cfg = manifest.config
    cache = EngineCache(tmp_path)
    with caplog.at_level(logging.INFO, logger="ipmcam"):
        backend = TensorRTBackend(manifest, precision, cache=cache)
        engine = IPMNetEngine(backend, cfg.style_dim, cfg.crop_size, cfg.n_masks)
        assert np.abs(engine.encode_style(crops[0], masks[0]) - style).max() < 0.05
        delta = engine.run(crops, masks, style, 0.8)
        engine.close()
        assert "building TensorRT engine" in caplog.text
        caplog.clear()
        # Built once: a second backend loads both engines from the cache.
        again = TensorRTBackend(manifest, precision, cache=cache)
        again.close()
        assert caplog.text.count("TensorRT engine from cache") == 2
    assert np.abs(delta - expected).max() < tolerance
    outside = np.broadcast_to((masks.max(axis=1) == 0)[..., None], delta.shape)
    assert np.all(delta[outside] == 0)
