"""`make gpu-check` on a machine without a GPU: its one-line refusal, and the whole check with the CPU standing in.

The check itself runs only on an NVIDIA GPU; here the torch backend on the CPU takes the GPU's place (it
must match the stored CPU reference just as tightly), so the parity logic, the timing, the JSON against
its schema and the rewritten section of the benchmarks page are exercised end to end.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ipmcam.engines.loader import default_model_dir
from ipmcam.ipmnet.weights import read_manifest
from ipmcam.measure import gpu_check
from ipmcam.measure.gpu_reference import REFERENCE_FILE, load_reference, stale
from tests.conftest import REPO

torch = pytest.importorskip("torch")


def test_without_a_cuda_gpu_it_says_so_in_one_line_and_fails() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = subprocess.run([sys.executable, "-m", "ipmcam.measure.gpu_check"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode != 0
    out = (done.stdout + done.stderr).strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no CUDA GPU: ") and "Traceback" not in done.stderr


def test_the_stored_reference_is_small_and_matches_the_shipped_model() -> None:
    assert REFERENCE_FILE.stat().st_size < 1_000_000
    manifest = read_manifest(default_model_dir("lite"))
    ref = load_reference()
    assert stale(ref, manifest) is None
    assert ref.crops.shape[0] >= 2 and np.abs(ref.deltas).max() > 1.0  # real makeup, not an empty check
    other = manifest.__class__(**{**manifest.__dict__, "files": {**manifest.files, "generator.onnx": {"sha256": "0"}}})
    assert "remake it" in stale(ref, other)


def test_a_backend_that_breaks_at_run_time_is_a_failed_check() -> None:
    class Broken:
        name = "ipmnet/broken"

        def encode_style(self, *_):
            raise RuntimeError("CUDA error: unspecified launch failure\nmore")

    result = gpu_check.gpu_reference_compare(Broken(), load_reference(), "fp16")
    assert result == {"error": "CUDA error: unspecified launch failure", "tolerance": {"max_abs_px": 1.5},
                      "passed": False}


def test_the_weights_load_without_the_safetensors_package(monkeypatch) -> None:
    """A bare GPU machine has torch but maybe not safetensors: the file is read directly then."""
    from ipmcam.engines.loader import load

    ref = load_reference()
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    engine = load(default_model_dir("lite"), backend="torch")
    delta = engine.run(ref.crops, ref.masks, ref.style, 0.8)
    assert np.abs(delta - ref.deltas).max() < 0.05


def test_the_check_end_to_end_with_the_cpu_standing_in(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "cuda_problem", lambda: None)
    monkeypatch.setattr(gpu_check, "COMBOS", (("torch", "fp32"), ("tensorrt", "fp16"), ("torch", "int8")))
    for name, value in {"batches": (1, 2), "calls": 2, "warmup": 1, "sizes": ((320, 240),), "frames": 3,
                        "pipeline_warmup": 1}.items():
        monkeypatch.setattr(gpu_check.Check, name, value)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nbefore\n\n{gpu_check.BEGIN}\nnot measured yet\n{gpu_check.END}\n\nafter\n")
    out = tmp_path / "gpu.json"
    rc = gpu_check.main(["--json", str(out), "--doc", str(doc), "--schema", str(REPO / "docs" / "bench_schema.json")])
    report = json.loads(out.read_text())
    assert rc == 0
    assert "schema check: valid" in report["notes"]
    [parity] = report["parity"]
    assert parity["backend"] == "torch" and parity["passed"] and parity["max_abs_px"] < 0.05
    assert parity["background_exact"] and parity["style_max_abs"] < 1e-3
    reasons = {(s["backend"], s["precision"]): s["reason"] for s in report["skipped"]}
    assert "tensorrt" in reasons[("tensorrt", "fp16")] and "fp32 and fp16 only" in reasons[("torch", "int8")]
    assert [g["batch"] for g in report["generator"]] == [1, 2]
    assert sorted(r["async_inference"] for r in report["runs"]) == [False, True]
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "not measured yet" not in text and "| torch | fp32 | ipmnet/torch-cpu-fp32 |" in text
    assert "Pipeline, ipmnet/torch-cpu-fp32, asynchronous" in text


def test_auto_fp16_runs_the_shipped_fp16_graph_instead_of_falling_back_to_classic() -> None:
    from ipmcam.engines.factory import create_engine

    engine = create_engine("auto", precision="fp16")
    assert engine.name.startswith("ipmnet/")
    engine.close()
