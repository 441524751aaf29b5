"""INT8 calibration: calibration sets, QDQ quantization, the quality/speed report, the TensorRT calibrator feed."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from ipmcam.calibration import dataset as cds  # noqa: E402
from ipmcam.calibration.dataset import BuildSettings, Deduplicator, Faces, build_set, collect  # noqa: E402
from ipmcam.calibration.quantize import (  # noqa: E402
    INT8_FILE,
    REPORT_FILE,
    QuantizeSettings,
    float_nodes,
    psnr,
    quantize,
    quantized_tensors_reaching,
)
from ipmcam.engines import calibration_set as cset  # noqa: E402
from ipmcam.engines.calibration_set import CalibrationSet, load_set  # noqa: E402
from ipmcam.errors import EngineError  # noqa: E402
from ipmcam.resources import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The shipped lite model, re-exported from its weights into a scratch folder (no int8 file yet).

    Trained weights, because quantization error is a property of trained activations: a random-init
    network without norms in its encoder saturates and says nothing about the shipped model.
    """
    torch = pytest.importorskip("torch")
    from ipmcam.ipmnet.export import export_model
    from ipmcam.ipmnet.networks import Generator
    from ipmcam.ipmnet.weights import WEIGHTS_FILE, load_weights, read_manifest

    torch.set_num_threads(1)
    shipped = WEIGHTS_DIR / "lite"
    cfg = read_manifest(shipped).config
    root = tmp_path_factory.mktemp("lite")
    export_model(load_weights(Generator(cfg), shipped / WEIGHTS_FILE), "lite", root)
    return root


def d18_frames(shared_data: Path, n: int = 30, every: int = 3) -> list[np.ndarray]:
    return [image for _, image in cds.iter_frames(shared_data / "videos" / "d18.mp4", every, n // every)]


@pytest.fixture(scope="module")
def calib_set(aligned_faces, model_dir) -> CalibrationSet:
    """A small set from real aligned crops, references styled by the model's style encoder."""
    crops = np.stack([c for c, _ in aligned_faces])
    masks = np.stack([np.round(m * 255).astype(np.uint8) for _, m in aligned_faces])
    styles = cset.compute_styles(model_dir, crops[-2:], masks[-2:])
    n = len(crops)
    return CalibrationSet(crops, masks, np.array([f"face{i}" for i in range(n)]), np.array([f"id{i}" for i in range(n)]),
                          crops[-2:], masks[-2:], np.array(["ref0", "ref1"]), styles, {"style_encoder_sha256": None})


@pytest.fixture(scope="module")
def quantized(model_dir, calib_set) -> dict:
    # minmax: the fastest calibration; 8 crops in batches of 4
    return quantize(model_dir, calib_set, QuantizeSettings(method="minmax", samples=8, batch=4), check_samples=4)


# --------------------------------------------------------------------------- calibration set

def test_deduplicator_drops_repeats_and_keeps_new_frames(aligned_faces) -> None:
    a, b = aligned_faces[0][0], aligned_faces[1][0]
    dedup = Deduplicator(threshold=2.0)
    assert dedup.keep(a, "clip")
    assert not dedup.keep(a.copy(), "clip")  # the same frame again
    noisy = np.clip(a.astype(np.int16) + np.random.default_rng(0).integers(-1, 2, a.shape), 0, 255).astype(np.uint8)
    assert not dedup.keep(noisy, "clip")  # re-encoded copy: +-1 level noise
    assert dedup.keep(b, "clip")  # another face
    assert cds.dhash(a) == cds.dhash(a.copy()) and cds.dhash(a) != cds.dhash(b)


def test_short_clip_gives_aligned_crops_and_a_repeated_frame_is_dropped(shared_data) -> None:
    from ipmcam.face.tracker import FaceTracker

    frames = d18_frames(shared_data)
    assert len(frames) == 10
    repeated = frames[:5] + [frames[4].copy()] + frames[5:]  # frame 12 shown twice in a row
    results = []
    with FaceTracker(static=True, smooth=False) as tracker:
        for clip in (frames, repeated):
            stats = {"d18": cds.SourceStats("d18", "d18", "video")}
            faces = collect(((f"d18#{i}", "d18", f) for i, f in enumerate(clip)), tracker,
                            Deduplicator(threshold=0.5), Faces(), stats=stats.__getitem__)
            results.append((faces, stats["d18"]))
    (faces, st), (faces_rep, st_rep) = results
    crops, masks = faces.arrays(256, 3)
    assert crops.shape == (len(faces), 256, 256, 3) and crops.dtype == np.uint8
    assert masks.shape == (len(faces), 3, 256, 256) and masks.dtype == np.uint8 and masks.max() > 200
    assert len(faces) >= 5  # most sampled frames of a talking head differ by more than half a grey level
    assert len(faces_rep) == len(faces)  # the repeat adds nothing...
    assert st_rep.duplicates == st.duplicates + 1 and st_rep.frames == st.frames + 1  # ...and is counted
    np.testing.assert_array_equal(np.stack(faces_rep.crops), crops)


def test_build_set_saves_npz_and_manifest_without_held_out_identities(shared_data, model_dir, tmp_path) -> None:
    held = shared_data / "faces" / "nonmakeup" / "XMY-176.png"  # a held-out identity
    assert cds.is_held_out("XMY-176")
    reference = shared_data / "faces" / "makeup" / "XMY-112.png"
    settings = BuildSettings(every=3, max_per_video=10, max_references=4)
    calib = build_set([shared_data / "videos" / "d18.mp4", held], [reference], model_dir, settings)
    manifest_path = calib.save(tmp_path / "set.npz")

    manifest = json.loads(manifest_path.read_text())
    loaded = load_set(tmp_path / "set.npz")
    assert len(loaded) == len(calib) == manifest["counts"]["crops"] > 0
    assert set(loaded.identities.tolist()) == {"d18"}
    assert str(held) in manifest["excluded_by_split"]
    (source,) = manifest["sources"]
    assert source["frames"] == 10 and source["kept"] == len(loaded) and source["kept"] + source["duplicates"] == 10
    assert manifest["sha256"] == cset.sha256_bytes((tmp_path / "set.npz").read_bytes())
    assert manifest["style_encoder_sha256"] == json.loads((model_dir / "manifest.json").read_text())[
        "files"]["style_encoder.onnx"]["sha256"]
    assert loaded.crops.dtype == np.uint8 and loaded.masks.dtype == np.uint8 and loaded.styles.dtype == np.float32
    assert loaded.styles.shape == (1, 64) and loaded.ref_crops.shape == (1, 256, 256, 3)
    np.testing.assert_array_equal(loaded.crops, calib.crops)
    # the stored style is the style encoder's code for the stored reference crop
    again = cset.compute_styles(model_dir, loaded.ref_crops, loaded.ref_masks)
    np.testing.assert_allclose(loaded.styles, again, atol=1e-5)
    # a tampered set is refused
    (tmp_path / "set.npz").write_bytes((tmp_path / "set.npz").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        load_set(tmp_path / "set.npz")


def test_generator_batches_have_the_graph_input_shapes(calib_set) -> None:
    n = len(calib_set)
    batches = list(calib_set.generator_batches(batch_size=4, alphas=(1.0, 0.5)))
    assert [len(b["image"]) for b in batches] == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    first = batches[0]
    assert first["image"].shape == (4, 3, 256, 256) and first["masks"].shape == (4, 3, 256, 256)
    assert first["style"].shape == (4, 64) and first["alpha"].shape == (4, 1)
    for name in ("image", "masks", "style", "alpha"):
        assert first[name].dtype == np.float32 and first[name].flags.c_contiguous
    assert -1.0 <= first["image"].min() and first["image"].max() <= 1.0
    np.testing.assert_array_equal(first["style"][2], calib_set.styles[0])  # references cycle
    np.testing.assert_array_equal(first["alpha"][:, 0], [1.0, 0.5, 1.0, 0.5])
    # the TensorRT calibrator feed keeps full batches only (fixed calibration profile)
    from ipmcam.engines.tensorrt_backend import calibration_batches

    full = list(calibration_batches(calib_set, 4))
    assert len(full) == n // 4 and all(b["image"].shape[0] == 4 for b in full)


# --------------------------------------------------------------------------- quantization

def test_quantize_writes_a_valid_qdq_graph_registered_in_the_manifest(model_dir, quantized) -> None:
    from ipmcam.ipmnet.weights import read_manifest

    path = model_dir / INT8_FILE
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 40
    assert [i.name for i in model.graph.input] == ["image", "masks", "style", "alpha"]
    read_manifest(model_dir).verify([INT8_FILE])  # listed, complete, checksum matches
    report = json.loads((model_dir / REPORT_FILE).read_text())
    assert report["tensorrt_compatible"] and report["settings"]["method"] == "minmax"
    # symmetric int8: every activation zero point is 0 (what TensorRT's explicit quantization needs)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # onnxruntime fuses every quantized convolution into QLinearConv, and runs the Relus between two of them
    # (LeakyRelu with slope 0, quantized) as int8 lookups: no float Relu left there
    relus = report["int8_relus"]
    assert len(relus) == 6 and set(relus) <= set(report["quantized_nodes"])
    assert report["onnxruntime_ops"].get("QLinearConv", 0) == len([n for n in report["quantized_nodes"] if "Conv" in n])
    assert report["onnxruntime_ops"].get("QLinearLeakyRelu", 0) == len(relus)
    leaky = [n for n in model.graph.node if n.op_type == "LeakyRelu"]
    assert sorted(n.name for n in leaky) == sorted(relus)
    assert all(a.f == 0.0 for n in leaky for a in n.attribute if a.name == "alpha")


def test_only_relus_between_two_quantized_convolutions_become_int8_lookups(model_dir) -> None:
    from ipmcam.calibration.quantize import int8_relus

    model = onnx.load(str(model_dir / "generator.onnx"))
    keep = float_nodes(model)
    relus = int8_relus(model, keep)
    producers = {o: n for n in model.graph.node for o in n.output}
    assert len(relus) == 6 and all(producers[n.input[0]].op_type == "Conv" for n in model.graph.node if n.name in relus)
    # the identity encoder's first Relu also feeds a skip connection (a float Add): it stays a Relu
    assert "/enc_id/net/net.1/net.1.1/Relu" not in relus
    assert sum(n.op_type == "Relu" for n in model.graph.node) > 0
    # a convolution kept float keeps its Relus float
    fresh = onnx.load(str(model_dir / "generator.onnx"))
    convs = {producers[n.input[0]].name for n in model.graph.node if n.name in relus}
    assert int8_relus(fresh, {**keep, **{c: "excluded by request" for c in convs}}) == []


def test_excluded_nodes_stay_float(model_dir, quantized) -> None:
    fp32 = onnx.load(str(model_dir / "generator.onnx"))
    qdq = onnx.load(str(model_dir / INT8_FILE))
    keep = float_nodes(fp32)
    names = {n.name: n for n in qdq.graph.node}
    produced_by = {o: n for n in qdq.graph.node for o in n.output}
    # InstanceNorm, the preprocessing (its blur convolutions too) and the composition are still there, float
    import torch

    from ipmcam.ipmnet.networks import build_generator
    from ipmcam.ipmnet.weights import read_manifest

    norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in build_generator(read_manifest(model_dir).config).modules())
    assert norms > 0 and sum(n.op_type == "InstanceNormalization" for n in qdq.graph.node) == norms
    # the final composition clamp(r + u * residual): the node writing the output and the Add it reads
    clamp = produced_by[qdq.graph.output[0].name]
    compose = produced_by[clamp.input[0]]
    assert (clamp.op_type, compose.op_type) == ("Clip", "Add")
    for name in ("/preprocess/Conv", "/preprocess/Conv_1", compose.name, clamp.name):
        assert name in keep and name in names
    for name in ("/preprocess/Conv", "/preprocess/Conv_1"):
        for tensor in names[name].input:
            src = produced_by.get(tensor)
            assert src is None or src.op_type not in ("DequantizeLinear", "QuantizeLinear"), (name, tensor)
    # the final composition reads the float preprocessed image and mask, never dequantized copies
    glue = {n for n, reason in keep.items() if reason.startswith("preprocessing")}
    assert quantized_tensors_reaching(qdq, glue, set(quantized["quantized_nodes"])) == []
    assert not any(n.startswith("/preprocess/") or n.startswith("/mlp/") for n in quantized["quantized_nodes"])


def test_int8_runs_in_onnxruntime_close_to_fp32(model_dir, quantized, aligned_faces, calib_set) -> None:
    """Tolerance (shipped weights, minmax on 8 calibration crops): PSNR >= 38 dB over the makeup region
    and mean |error| <= 3 levels there (measured 43.2 dB), and pixels outside the masks bit-identical to
    the input, as in fp32. Trained weights are measured by `ipmcam calibrate report` (docs/benchmarks.md)."""
    from ipmcam.engines.loader import load

    feeds = next(calib_set.generator_batches(len(calib_set), alphas=(1.0,)))
    outs = [ort.InferenceSession(str(model_dir / f), providers=["CPUExecutionProvider"]).run(["output"], feeds)[0] * 127.5
            for f in ("generator.onnx", INT8_FILE)]
    u = feeds["masks"].max(axis=1, keepdims=True) > 0
    ref, out = outs
    assert np.abs(out - ref).max() > 0  # it really is a different graph
    print(f"int8 vs fp32: makeup-region PSNR {psnr(out, ref, u):.2f} dB")
    assert psnr(out, ref, u) >= 38.0
    assert np.abs(out - ref)[np.broadcast_to(u, out.shape)].mean() <= 3.0
    outside = np.broadcast_to(~u, out.shape)
    np.testing.assert_array_equal(out[outside], (feeds["image"] * 127.5)[outside])
    # and the engine loads it with --precision int8
    engine = load(model_dir, backend="onnxruntime", precision="int8")
    crop, masks = aligned_faces[0]
    delta = engine.run(crop[None], masks[None], engine.encode_style(crop, masks))
    assert delta.shape == (1, 256, 256, 3) and np.abs(delta).max() > 1
    assert not delta[0][masks.max(axis=0) == 0].any()  # background untouched
    engine.close()


def test_report_measures_quality_and_latency(model_dir, quantized, calib_set) -> None:
    from ipmcam.calibration.report import ReportSettings, build_report, compare_outputs, format_report

    report = build_report(model_dir, calib_set,
                          ReportSettings(runs=3, warmup=1, threads=(1,), max_crops=4, profile=True))
    q = report["quality"]
    assert q["crops"] == 4 and q["background_exact"] and 25 < q["psnr_makeup_region_db"] < q["psnr_db"] < 80
    lat = report["latency"]["threads1_batch1"]
    assert lat["fp32"]["runs"] == lat["int8"]["runs"] == 3 and lat["speedup"] > 0 and lat["speedup_paired"] > 0
    assert set(report["targets"]) == {"speedup_batch1", "psnr_db", "lips_delta_e_gap", "background_exact"}
    assert "latency threads1_batch1" in format_report(report)
    # the kernel profile: both graphs' convolutions timed, int8's quantize nodes counted
    k = lat["kernels"]
    assert k["runs"] == 3 and "ceiling x" in format_report(report)
    assert k["kernel_ms"]["fp32"]["quantize"] == 0 < k["kernel_ms"]["int8"]["quantize"]
    assert all(k["kernel_ms"][p][c] > 0 for p in ("fp32", "int8") for c in ("conv", "other"))
    # identical outputs: infinite PSNR and no lip colour gap
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    m = np.zeros((2, 3, 32, 32), np.float32)
    m[:, 0, 8:24, 8:24] = 1
    same = compare_outputs(x, x, x, m, np.zeros((2, 3), np.float32))
    assert same["psnr_db"] == float("inf") and same["lips_delta_e_gap"] == 0 and same["max_abs_error"] == 0


def test_kernel_profile_counts_later_runs_per_class_and_bounds_the_speedup() -> None:
    from ipmcam.calibration.kernel_profile import kernel_ms_per_run, op_class, speedups

    def run(ts: int) -> dict:
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 100}

    def kernel(ts: int, op: str, dur: int) -> dict:
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0), kernel(10, "Conv", 5000),  # warm-up run: left out
              run(1000), kernel(1010, "QLinearConv", 3000), kernel(1050, "QuantizeLinear", 500),
              {"cat": "Node", "name": "n_fence_before", "ts": 1060, "dur": 9, "args": {"op_name": "Add"}},
              run(2000), kernel(2010, "QLinearConv", 1000), kernel(2020, "Transpose", 400), kernel(2030, "Add", 200),
              kernel(5000, "Conv", 7000)]  # outside every run
    assert kernel_ms_per_run(events, skip_runs=1) == {"conv": 2.0, "layout": 0.2, "quantize": 0.25, "other": 0.1}
    with pytest.raises(ValueError, match="no run after the first 3"):
        kernel_ms_per_run(events, skip_runs=3)
    assert [op_class(o) for o in ("Conv", "ReorderOutput", "DequantizeLinear", "InstanceNormalization")] == [
        "conv", "layout", "quantize", "other"]
    # fp32 40 ms of which 30 conv; int8 convs 15 ms: the best int8 could do is 40 / (10 + 15)
    s = speedups({"conv": 30.0, "layout": 2.0, "quantize": 0.0, "other": 8.0},
                 {"conv": 15.0, "layout": 2.0, "quantize": 3.0, "other": 8.0})
    assert s == {"conv_speedup": 2.0, "kernel_speedup": round(40 / 28, 3), "ceiling": 1.6, "conv_share_fp32": 0.75}


# --------------------------------------------------------------------------- TensorRT implicit calibration

class FakeCuda:
    """Records the CUDA calls the calibrator makes."""

    def __init__(self) -> None:
        self.memory: dict[int, bytes] = {}
        self.next = 4096
        self.freed: list[int] = []
        self.syncs = 0

    def malloc(self, nbytes: int) -> int:
        ptr, self.next = self.next, self.next + nbytes
        self.memory[ptr] = b""
        return ptr

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        self.memory[ptr] = host.tobytes()

    def synchronize(self) -> None:
        self.syncs += 1

    def free(self, ptr: int) -> None:
        self.freed.append(ptr)


def test_entropy_calibrator_feeds_batches_and_caches_scales(calib_set, tmp_path) -> None:
    """The calibrator logic, with a stand-in for TensorRT's base class (no GPU needed)."""
    from ipmcam.engines.tensorrt_backend import calibration_batches, make_entropy_calibrator

    class Base:
        def __init__(self) -> None:
            self.base_initialised = True

    trt = types.SimpleNamespace(IInt8EntropyCalibrator2=Base, __version__="10.fake")
    cuda = FakeCuda()
    cache = tmp_path / "calibration.cache"
    cal = make_entropy_calibrator(trt, cuda, calibration_batches(calib_set, 2), 2, cache)
    assert isinstance(cal, Base) and cal.base_initialised and cal.get_batch_size() == 2
    names = ["image", "masks", "style", "alpha"]
    expected = list(calibration_batches(calib_set, 2))
    for feeds in expected:
        ptrs = cal.get_batch(names)
        assert len(ptrs) == 4 and len(set(ptrs)) == 4
        for name, ptr in zip(names, ptrs):
            assert cuda.memory[ptr] == feeds[name].tobytes()
    assert cal.get_batch(names) is None and cal.fed == len(expected) and cuda.syncs == len(expected)
    assert cal.read_calibration_cache() is None
    cal.write_calibration_cache(memoryview(b"TRT-1.0 scales"))
    assert cal.read_calibration_cache() == b"TRT-1.0 scales"
    cal.close()
    assert len(cuda.freed) == 4
    with pytest.raises(EngineError, match="IInt8EntropyCalibrator2"):
        make_entropy_calibrator(types.SimpleNamespace(__version__="11.0"), cuda, iter(()), 2, cache)


def test_tensorrt_calibrator_subclasses_the_installed_tensorrt(calib_set, tmp_path) -> None:
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed")
    from ipmcam.engines.tensorrt_backend import calibration_batches, has_implicit_calibration, make_entropy_calibrator

    if not has_implicit_calibration(trt):
        pytest.skip(f"TensorRT {trt.__version__} has no implicit calibration")
    cal = make_entropy_calibrator(trt, FakeCuda(), calibration_batches(calib_set, 2), 2, tmp_path / "c.cache")
    assert isinstance(cal, trt.IInt8EntropyCalibrator2) and cal.get_batch_size() == 2


# --------------------------------------------------------------------------- command line

def test_cli_registers_calibrate_without_importing_torch() -> None:
    code = ("import sys, ipmcam.cli as c; p = c.build_parser(); "
            "a = p.parse_args(['calibrate', 'quantize', '--method', 'entropy', '--model-dir', 'm']); "
            "b = p.parse_args(['calibrate', 'build-set', '--held-out']); "
            "print(a.method, a.handler.__name__, b.held_out, b.handler.__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["entropy", "cmd_quantize", "True", "cmd_build_set", "False"]
