"""The model that ships in weights/lite: it loads, verifies, and keeps the background exact."""
from __future__ import annotations

import numpy as np

from ipmcam.engines.loader import default_model_dir, load
from ipmcam.ipmnet.weights import read_manifest


def test_shipped_lite_model_is_complete_and_small() -> None:
    root = default_model_dir("lite")
    manifest = read_manifest(root)
    manifest.verify(["generator.onnx", "style_encoder.onnx", "ipmnet.safetensors", "generator.int8.onnx",
                     "generator.fp16.onnx"])
    assert sum((root / name).stat().st_size for name in ("generator.onnx", "style_encoder.onnx")) < 40e6


def test_shipped_model_changes_only_the_makeup_regions(aligned_faces) -> None:
    for precision in ("fp32", "fp16", "int8"):
        engine = load(backend="onnxruntime", precision=precision)
        crops = np.stack([c for c, _ in aligned_faces[:3]])
        masks = np.stack([m for _, m in aligned_faces[:3]])
        style = engine.encode_style(*aligned_faces[4])
        delta = engine.run(crops, masks, style)
        outside = masks.max(axis=1) == 0
        assert delta.shape == crops.shape and delta.dtype == np.float32
        assert not delta[outside].any()
        assert np.abs(delta[~outside]).mean() > 1.0  # and it does paint inside
        engine.close()


def test_onnxruntime_sessions_sleep_instead_of_spinning() -> None:
    """Idle workers must not busy-wait on the cores the video threads (or the INT8 report's other session) need."""
    from ipmcam.calibration.report import session
    from ipmcam.engines.onnx_backend import ALLOW_SPINNING, OnnxBackend

    manifest = read_manifest(default_model_dir("lite"))
    backend = OnnxBackend(manifest, "int8", providers=["CPUExecutionProvider"], threads=2)
    report_session = session(manifest.path("generator.onnx"), 2)
    for opened in (backend.style_session, backend.generator_session, report_session):
        options = opened.get_session_options()
        assert options.get_session_config_entry(ALLOW_SPINNING) == "0"
        assert options.intra_op_num_threads == 2
    backend.close()
