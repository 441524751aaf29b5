"""Exported model directories: ONNX validity, torch/onnxruntime parity, manifest checks, IPMNetEngine."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from ipmcam.engines.ipmnet_engine import to_model_input  # noqa: E402
from ipmcam.engines.loader import load  # noqa: E402
from ipmcam.errors import EngineError  # noqa: E402
from ipmcam.ipmnet import export  # noqa: E402
from ipmcam.ipmnet.config import get_config  # noqa: E402
from ipmcam.ipmnet.networks import build_generator  # noqa: E402
from ipmcam.ipmnet.weights import read_manifest, save_weights  # noqa: E402


def export_random(name: str, root: Path, fp16: bool) -> tuple[object, Path]:
    """A random-init model (fixed seed) exported through the CLI, as a training run's weights would be."""
    torch.set_num_threads(2)
    model = build_generator(get_config(name), seed=0).eval()
    save_weights(model, root / "trained.safetensors", model.cfg)
    args = ["--config", name, "--weights", str(root / "trained.safetensors"), "--out", str(root / "model")]
    export.main(args + (["--fp16"] if fp16 else []))
    return model, root / "model"


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> tuple[object, Path]:
    return export_random("lite", tmp_path_factory.mktemp("lite"), fp16=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[object, Path]:
    return export_random("full", tmp_path_factory.mktemp("full"), fp16=False)


@pytest.fixture(params=["lite", "full"])
def exported(request) -> tuple[object, Path]:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def real_batch(aligned_faces) -> tuple[np.ndarray, np.ndarray]:
    crops = np.stack([c for c, _ in aligned_faces][:4])
    masks = np.stack([m for _, m in aligned_faces][:4])
    return crops, masks


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_graphs_are_valid_opset17_with_dynamic_batch(exported) -> None:
    _, root = exported
    graphs = {"style_encoder.onnx": ["image", "masks"], "generator.onnx": ["image", "masks", "style", "alpha"]}
    for file, inputs in graphs.items():
        model = onnx.load(str(root / file))
        onnx.checker.check_model(model, full_check=True)
        assert {op.domain: op.version for op in model.opset_import}[""] == 17
        assert [i.name for i in model.graph.input] == inputs
        assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in model.graph.input)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, as export.py uses it
def test_pixel_unshuffle_exports_as_space_to_depth_exactly(lite, tmp_path) -> None:
    """The lite encoders' unshuffle is SpaceToDepth plus a Gather (no 6-D Transpose), bit for bit torch's;
    in the exported graphs the Gather is folded into the convolution after it."""
    from ipmcam.ipmnet.networks import Unshuffle

    _, root = lite
    for file, unshuffles in (("style_encoder.onnx", 1), ("generator.onnx", 2)):
        nodes = onnx.load(str(root / file)).graph.node
        s2d = {n.output[0] for n in nodes if n.op_type == "SpaceToDepth"}
        assert len(s2d) == unshuffles and not any(n.op_type == "Gather" and n.input[0] in s2d for n in nodes)
        assert sum(n.op_type == "Conv" and n.input[0] in s2d for n in nodes) == unshuffles
    x = torch.rand(2, 9, 64, 48)
    with torch.no_grad():
        torch.onnx.export(Unshuffle(4, 9), (x,), str(tmp_path / "u.onnx"), input_names=["x"], opset_version=17,
                          dynamo=False)
    out = session(tmp_path / "u.onnx").run(None, {"x": x.numpy()})[0]
    assert np.array_equal(out, torch.nn.functional.pixel_unshuffle(x, 4).numpy())


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch(exported, real_batch, batch) -> None:
    model, root = exported
    crops, masks = real_batch
    x, m = to_model_input(crops[:batch]), masks[:batch]
    alpha = np.linspace(1.0, 0.4, batch, dtype=np.float32)[:, None]
    with torch.no_grad():
        ref_style = model.encode_style(torch.from_numpy(x[::-1].copy()), torch.from_numpy(m[::-1].copy())).numpy()
        expected = model(*map(torch.from_numpy, (x, m, ref_style, alpha))).numpy()
    style = session(root / "style_encoder.onnx").run(None, {"image": x[::-1].copy(), "masks": m[::-1].copy()})[0]
    out = session(root / "generator.onnx").run(None, {"image": x, "masks": m, "style": ref_style, "alpha": alpha})[0]
    assert np.abs(style - ref_style).max() < 1e-4
    assert np.abs(out - expected).max() < 1e-4
    outside = np.broadcast_to(m.max(axis=1, keepdims=True) == 0, x.shape)
    assert np.array_equal(out[outside], x[outside])


def test_fp16_graph_is_close_and_keeps_the_background(lite, real_batch) -> None:
    _, root = lite
    crops, masks = real_batch
    x, m = to_model_input(crops[:2]), masks[:2]
    style = session(root / "style_encoder.onnx").run(None, {"image": x, "masks": m})[0]
    feeds = {"image": x, "masks": m, "style": style[::-1].copy(), "alpha": np.ones((2, 1), np.float32)}
    out32 = session(root / "generator.onnx").run(None, feeds)[0]
    out16 = session(root / "generator.fp16.onnx").run(None, feeds)[0]
    assert out16.dtype == np.float32
    assert np.abs(out16 - out32).max() * 127.5 < 1.0  # under one grey level
    outside = np.broadcast_to(m.max(axis=1, keepdims=True) == 0, x.shape)
    assert np.array_equal(out16[outside], x[outside])


def test_manifest_detects_missing_truncated_and_tampered_files(lite, tmp_path) -> None:
    _, root = lite
    manifest = read_manifest(root)
    assert manifest.config == get_config("lite") and manifest.opset == 17
    manifest.verify(manifest.files)  # the exported directory is intact

    copy = tmp_path / "model"
    shutil.copytree(root, copy)
    target = copy / "generator.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"generator\.onnx does not match its manifest checksum"):
        load(copy, backend="onnxruntime")
    target.write_bytes(bytes(data[:-10]))
    with pytest.raises(EngineError, match=r"generator\.onnx is truncated"):
        load(copy, backend="onnxruntime")
    target.unlink()
    with pytest.raises(EngineError, match=r"generator\.onnx is missing"):
        load(copy, backend="onnxruntime")
    (copy / "manifest.json").unlink()
    with pytest.raises(EngineError, match="no model manifest"):
        load(copy)
    with pytest.raises(EngineError, match="no model directory"):
        load(tmp_path / "nowhere")
    with pytest.raises(EngineError, match=r"generator\.int8\.onnx is not part of the model in .*: make it with "
                       r"`ipmcam calibrate build-set"):
        load(root, backend="onnxruntime", precision="int8")


def test_engine_encodes_the_reference_once(lite, aligned_faces, caplog) -> None:
    model, root = lite
    with caplog.at_level(logging.INFO, logger="ipmcam"):
        engine = load(root)  # auto: onnxruntime on a machine without a GPU
    assert engine.name.startswith("ipmnet/")
    assert "skipped" in caplog.text or "tensorrt" in engine.name  # auto explains what it passed over
    ref_crop, ref_masks = aligned_faces[-1]
    style = engine.encode_style(ref_crop, ref_masks)
    assert style.shape == (1, model.cfg.style_dim)
    crops = np.stack([c for c, _ in aligned_faces[:3]])
    masks = np.stack([m for _, m in aligned_faces[:3]])
    for _ in range(3):
        delta = engine.run(crops, masks, style, intensity=0.7)
    assert engine.style_calls == 1
    assert delta.shape == crops.shape and delta.dtype == np.float32
    outside = np.broadcast_to((masks.max(axis=1) == 0)[..., None], delta.shape)
    assert np.all(delta[outside] == 0)
    assert np.abs(delta[~outside]).max() > 1.0
    # The delta is the torch model's output minus its input, in pixel units.
    x = to_model_input(crops)
    with torch.no_grad():
        expected = model(*map(torch.from_numpy, (x, masks, np.repeat(style, 3, 0), np.full((3, 1), 0.7, np.float32))))
    expected_delta = (expected.numpy() - x).transpose(0, 2, 3, 1) * 127.5
    assert np.abs(delta - expected_delta).max() < 0.02
    # One style per crop works too; a wrong style shape is a clear error.
    per_crop = engine.run(crops, masks, np.repeat(style, 3, 0), intensity=0.7)
    assert np.array_equal(per_crop, delta)
    with pytest.raises(EngineError, match="expected a style"):
        engine.run(crops, masks, np.zeros((2, model.cfg.style_dim), np.float32))
    engine.close()


def test_torch_cpu_backend_matches_onnxruntime_on_read_only_inputs(lite, aligned_faces) -> None:
    """Read-only arrays (a broadcast style, a frame from a decoder) go in without a warning, copied."""
    import warnings

    _, root = lite
    crops = np.stack([c for c, _ in aligned_faces[:1]])  # batch 1: the broadcast style is a read-only view
    masks = np.stack([m for _, m in aligned_faces[:1]])
    engines = [load(root, backend=name) for name in ("onnxruntime", "torch")]
    style = engines[0].encode_style(crops[0], masks[0])
    style.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deltas = [engine.run(crops, masks, style) for engine in engines]
    assert engines[1].name.startswith("ipmnet/torch-cpu")
    assert np.abs(deltas[0] - deltas[1]).max() < 0.05  # pixel units: fp32 on both sides
    for engine in engines:
        engine.close()


@pytest.mark.gpu
def test_torch_cuda_backend_matches_onnxruntime(lite, real_batch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _, root = lite
    crops, masks = real_batch
    cpu = load(root, backend="onnxruntime")
    style = cpu.encode_style(crops[0], masks[0])
    expected = cpu.run(crops, masks, style)
    fp32 = load(root, backend="torch", precision="fp32")
    assert fp32.name.endswith("-graphs")
    for _ in range(2):  # the second call replays the captured CUDA graph
        assert np.abs(fp32.run(crops, masks, style) - expected).max() < 0.05
    assert np.abs(fp32.run(crops[:1], masks[:1], style) - expected[:1]).max() < 0.05
    fp16 = load(root, backend="torch", precision="fp16")
    delta = fp16.run(crops, masks, style)
    assert np.abs(delta - expected).max() < 1.5
    assert np.all(delta[np.broadcast_to((masks.max(axis=1) == 0)[..., None], delta.shape)] == 0)


def test_add_fp16_writes_the_shipped_graph_and_leaves_the_rest(tmp_path) -> None:
    """The shipped generator.fp16.onnx is what `--add-fp16` makes from the shipped weights."""
    import json

    from ipmcam.engines.loader import default_model_dir

    shipped = default_model_dir("lite")
    root = tmp_path / "lite"
    shutil.copytree(shipped, root)
    (root / "generator.fp16.onnx").unlink()
    data = json.loads((root / "manifest.json").read_text())
    del data["files"]["generator.fp16.onnx"]
    (root / "manifest.json").write_text(json.dumps(data))
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.name != "manifest.json"}
    weights = str(root / "ipmnet.safetensors")
    export.main(["--config", "lite", "--weights", weights, "--out", str(root), "--add-fp16"])
    manifest = read_manifest(root)
    assert manifest.files["generator.fp16.onnx"] == read_manifest(shipped).files["generator.fp16.onnx"]
    assert all((root / name).read_bytes() == blob for name, blob in before.items())
    other = tmp_path / "other.safetensors"
    save_weights(build_generator(get_config("lite"), seed=1), other)
    with pytest.raises(SystemExit):  # weights of another model: refused, nothing written
        export.main(["--config", "lite", "--weights", str(other), "--out", str(root), "--add-fp16"])
