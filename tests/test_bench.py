"""`ipmcam bench`: the real pipeline timed per stage, the generator micro-benchmark, the report files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipmcam.cli import main
from ipmcam.engines.base import Engine
from ipmcam.errors import EngineError
from ipmcam.measure import bench as bench_module
from ipmcam.measure.bench import (
    BenchSettings,
    Report,
    engine_specs,
    size_ratios,
)
from ipmcam.measure.frames import SyntheticFace, fit_frame
from ipmcam.realtime.stages import format_stages

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "docs" / "bench_schema.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def validate(report: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


@pytest.fixture(scope="module")
def lite_model(tmp_path_factory) -> Path:
    """A random-init lite model exported like a trained one (timings do not depend on the weights)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ipmcam.ipmnet import export
    from ipmcam.ipmnet.config import get_config
    from ipmcam.ipmnet.networks import build_generator
    from ipmcam.ipmnet.weights import save_weights

    root = tmp_path_factory.mktemp("bench_lite")
    torch.set_num_threads(2)
    model = build_generator(get_config("lite"), seed=0).eval()
    save_weights(model, root / "trained.safetensors", model.cfg)
    export.main(["--config", "lite", "--weights", str(root / "trained.safetensors"), "--out", str(root / "model")])
    return root / "model"


def test_pipeline_bench_writes_a_valid_report_and_chart(tmp_path, capsys) -> None:
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["bench", "--engine", "classic", "--frames", "20", "--warmup", "5", "--size", "320x240,640x480",
                 "--json", str(out), "--plot", str(plot)])
    assert code == 0
    report = json.loads(out.read_text())
    validate(report)
    assert report["mode"] == "pipeline" and report["settings"]["warmup"] == 5
    assert [r["size_label"] for r in report["runs"]] == ["320x240", "640x480"]
    for run in report["runs"]:
        assert run["engine"] == "classic" and run["frames_out"] == 20 and run["frames_dropped"] == 0
        assert run["frames_with_face"] > 10  # the clip shows a face throughout
        stages = run["stages"]
        for name in ("capture", "landmarks", "align", "generator", "blend", "sink"):
            assert stages[name]["count"] == 20, name  # the warm-up frames are not counted
            assert 0 <= stages[name]["p50"] <= stages[name]["p95"] <= stages[name]["p99"]
        assert stages["style"]["count"] == 1  # encoded once, before the warm-up
        assert run["latency"]["count"] == 20 and run["latency"]["p50"] >= stages["landmarks"]["p50"]
        assert run["throughput_fps"] > 0 and run["cpu_percent"] > 0 and run["peak_rss_mb"] > 50
        assert run["gpu_memory_mb"] is None  # classic never touches a GPU
    ratio, = report["ratios"]
    assert (ratio["from"], ratio["to"]) == ("320x240", "640x480") and ratio["frame_area"] == 4.0
    assert set(ratio["size_stages"]) == {"align", "blend"} and ratio["size_stages"]["blend"] > 0
    assert ratio["face_area"] > 1.0  # letterboxed: the face grows with the frame
    assert report["versions"]["numpy"] == np.__version__ and report["machine"]["cores"] >= 1
    assert plot.read_bytes()[:8] == PNG_MAGIC and plot.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "landmarks" in printed and "640x480 / 320x240" in printed and "throughput" in printed


def test_generator_only_on_real_crops(lite_model, tmp_path) -> None:
    out, plot = tmp_path / "gen.json", tmp_path / "gen.png"
    code = main(["bench", "--generator-only", "--engine", "ipmnet", "--model-dir", str(lite_model),
                 "--backend", "onnxruntime", "--batch", "1,2", "--calls", "3", "--warmup", "1",
                 "--json", str(out), "--plot", str(plot)])
    assert code == 0
    report = json.loads(out.read_text())
    validate(report)
    assert report["mode"] == "generator" and report["runs"] == []
    rows = report["generator"]
    assert [(r["engine_name"], r["batch"], r["calls"]) for r in rows] == [("ipmnet/onnxruntime", 1, 3),
                                                                           ("ipmnet/onnxruntime", 2, 3)]
    for row in rows:
        per_call, per_face = row["ms_per_call"], row["ms_per_face"]
        assert per_call["p50"] > 0 and per_face["p50"] == pytest.approx(per_call["p50"] / row["batch"], rel=1e-3)
        assert row["faces_per_second"] > 0 and row["style_ms"] > 0
    assert plot.read_bytes()[:8] == PNG_MAGIC


class RecordingEngine(Engine):
    """Stands in for a loaded model and notes which model each ``run`` went to: the order is what is tested."""

    name = "ipmnet/recording"

    def __init__(self, model: str, calls: list[str], pause_s: float) -> None:
        self.model, self.calls, self.pause_s = model, calls, pause_s

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> Any:
        return None

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        self.calls.append(self.model)
        time.sleep(self.pause_s)  # durations of a millisecond or more: the JSON's rounding stays negligible
        return np.zeros(crops.shape, np.float32)


def test_generator_beside_a_baseline_alternates_calls_and_gives_ratios(lite_model, tmp_path, monkeypatch,
                                                                       capsys) -> None:
    """Both models per precision and batch, calls A, B, A, B; a baseline without fp16 skips that pair."""
    old = tmp_path / "old_model"
    shutil.copytree(lite_model, old)
    calls: list[str] = []

    def fake_load(model_dir: Path | None = None, backend: str = "auto", precision: str = "fp32",
                  config: str = "lite") -> Engine:
        model = "baseline" if Path(model_dir) == old else "main"
        if model == "baseline" and precision == "fp16":
            raise EngineError(f"no generator.fp16.onnx in {old}")
        return RecordingEngine(model, calls, 0.002 if model == "main" else 0.001)

    monkeypatch.setattr(bench_module, "load", fake_load)
    out = tmp_path / "vs.json"
    code = main(["bench", "--generator-only", "--engine", "ipmnet", "--model-dir", str(lite_model),
                 "--baseline-model-dir", str(old), "--backend", "onnxruntime", "--precision", "fp32,int8,fp16",
                 "--batch", "1,2", "--calls", "3", "--warmup", "1", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    validate(report)
    assert report["settings"]["baseline_model_dir"] == str(old)
    rows = report["generator"]
    assert [(r["model"], r["precision"], r["batch"], r["calls"]) for r in rows] == [
        (model, precision, batch, 3) for precision in ("fp32", "int8") for batch in (1, 2)
        for model in ("main", "baseline")]
    assert {r["model_dir"] for r in rows if r["model"] == "main"} == {str(lite_model)}
    assert {r["model_dir"] for r in rows if r["model"] == "baseline"} == {str(old)}
    # 2 precisions x 2 batch sizes x (1 warm-up + 3 measured rounds), each round main then baseline
    assert calls == ["main", "baseline"] * 16
    skip, = report["skipped"]
    assert skip["precision"] == "fp16" and "baseline model" in skip["reason"]

    by_key = {(r["model"], r["precision"], r["batch"]): r for r in rows}
    ratios = report["generator_ratios"]
    assert [(r["precision"], r["batch"]) for r in ratios] == [("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)]
    for ratio in ratios:
        main_row = by_key["main", ratio["precision"], ratio["batch"]]
        base_row = by_key["baseline", ratio["precision"], ratio["batch"]]
        for stat in ("p50", "mean"):
            expected = main_row["ms_per_face"][stat] / base_row["ms_per_face"][stat]
            assert ratio[stat] == pytest.approx(expected, rel=2e-3), stat
        assert (ratio["model_dir"], ratio["baseline_model_dir"]) == (str(lite_model), str(old))
    printed = capsys.readouterr().out
    assert "main model / baseline model" in printed and "ipmnet/recording fp32 baseline" in printed


def test_baseline_model_dir_is_refused_outside_generator_mode(tmp_path, capsys) -> None:
    code = main(["bench", "--engine", "classic", "--baseline-model-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ipmcam: error:") and "--generator-only" in err[0]

    code = main(["bench", "--generator-only", "--baseline-model-dir", str(tmp_path / "nowhere")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ipmcam: error:") and "no model at" in err[0]


def test_synthetic_camera_async_and_skips(lite_model, tmp_path) -> None:
    """A simulated 30 fps camera on the synthetic face; ipmnet asked for on a backend that cannot run is skipped."""
    out = tmp_path / "syn.json"
    code = main(["bench", "--source", "synthetic", "--fps", "30", "--async", "--engine", "classic,ipmnet",
                 "--model-dir", str(lite_model), "--backend", "onnxruntime", "--precision", "int8",
                 "--size", "320x240", "--frames", "10", "--warmup", "2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    validate(report)
    run, = report["runs"]
    assert run["engine"] == "classic" and run["frames_out"] == 10 and run["frames_with_face"] >= 8
    assert report["settings"]["capture"].startswith("simulated 30 fps camera")
    assert report["ratios"] == []  # one size: nothing to compare
    skip, = report["skipped"]
    assert (skip["engine"], skip["backend"], skip["precision"]) == ("ipmnet", "onnxruntime", "int8")
    assert "generator.int8.onnx" in skip["reason"]
    from ipmcam.realtime.pipeline import PipelineOptions

    if hasattr(PipelineOptions(), "async_inference"):
        assert run["async_inference"] and run["stages"]["generator_worker"]["count"] == run["generator_calls"] > 0
    else:
        assert not run["async_inference"] and any("--async" in n for n in report["notes"])


def test_missing_model_is_reported_not_fatal(tmp_path, capsys) -> None:
    out = tmp_path / "none.json"
    code = main(["bench", "--engine", "ipmnet", "--model-dir", str(tmp_path / "nowhere"), "--json", str(out)])
    assert code == 1  # nothing could run
    report = json.loads(out.read_text())
    validate(report)
    skip, = report["skipped"]
    assert skip["engine"] == "ipmnet" and "no model at" in skip["reason"]
    assert "skipped ipmnet" in capsys.readouterr().out


def test_backend_all_records_why_a_backend_cannot_run(lite_model) -> None:
    import importlib.util

    report = Report(BenchSettings())
    specs = engine_specs(BenchSettings(engines=("ipmnet",), backend="all", precisions=("fp32",),
                                       model_dir=lite_model), report)
    tried = [s.backend for s in specs]
    skipped = {s["backend"]: s["reason"] for s in report.skipped}
    assert set(tried) | set(skipped) == {"onnxruntime", "torch", "tensorrt"} and "onnxruntime" in tried
    if importlib.util.find_spec("tensorrt") is None:
        assert skipped["tensorrt"] == "the tensorrt package is not installed"


def test_frames_are_made_at_the_camera_size() -> None:
    image = np.full((512, 512, 3), 200, np.uint8)
    wide = fit_frame(image, (1280, 720))
    assert wide.shape == (720, 1280, 3) and wide[:, :200].max() == 0 and wide[360, 640, 0] == 200
    padded = fit_frame(image, (1920, 1080), fit="pad")  # kept at its own size, centred
    assert padded.shape == (1080, 1920, 3) and (padded[:, :, 0] == 200).sum() == 512 * 512
    small = fit_frame(image, (640, 480), fit="pad")  # too big: shrunk to fit
    assert (small[:, :, 0] > 0).sum() == 480 * 480

    photo = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    source = SyntheticFace(photo, (320, 240))
    assert np.array_equal(source(7), SyntheticFace(photo, (320, 240))(7))  # deterministic
    assert not np.array_equal(source(0), source(15))  # and moving
    assert source(0).shape == (240, 320, 3)


def test_format_stages_lines() -> None:
    summary = {"latency": {"p50": 30.0, "p95": 41.26}, "blend": {"p50": 1.04, "p95": 2.0},
               "landmarks": {"p50": 8.6, "p95": 11.7}, "capture": {"p50": 0.1, "p95": 0.2, "p99": 0.3}}
    assert format_stages(summary) == [
        "capture    p50 0.1 ms  p95 0.2 ms",
        "landmarks  p50 8.6 ms  p95 11.7 ms",
        "blend      p50 1.0 ms  p95 2.0 ms",
        "latency    p50 30.0 ms  p95 41.3 ms",
    ]
    assert format_stages({}) == []


def test_ratios_compare_largest_to_smallest() -> None:
    def run(size: tuple[int, int], blend: float, face: float) -> dict:
        stats = {"p50": blend, "p95": blend, "p99": blend, "mean": blend, "count": 5}
        return {"engine": "classic", "backend": None, "precision": None, "engine_name": "classic", "size": list(size),
                "size_label": f"{size[0]}x{size[1]}", "stages": {"blend": stats, "align": stats},
                "face_size_px": face, "latency": stats, "throughput_fps": 1000 / blend}

    ratio, = size_ratios([run((1920, 1080), 6.0, 300.0), run((640, 480), 2.0, 150.0), run((1280, 720), 4.0, 200.0)])
    assert (ratio["from"], ratio["to"]) == ("640x480", "1920x1080")
    assert ratio["size_stages"] == {"align": 3.0, "blend": 3.0} and ratio["face_area"] == 4.0
    assert ratio["frame_area"] == pytest.approx(6.75)


def test_the_cli_stays_light_to_import() -> None:
    code = ("import sys, ipmcam.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'matplotlib', 'rich', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
