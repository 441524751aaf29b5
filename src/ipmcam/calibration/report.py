"""Quality against speed of the INT8 generator, measured against fp32 in one run.

Quality, on held-out identities only (a set built with ``split="held-out"``,
never seen by calibration), each crop made up with a held-out reference:

* PSNR of the INT8 output against the fp32 output, over the whole crop and
  over the makeup region only (mask union > 0; outside it both outputs equal
  the input exactly, which would flatter the whole-crop figure);
* the largest absolute difference, in pixel levels;
* lip colour: CIEDE2000 between the lips of each output and the reference's
  lips (robust median colour, ``ipmnet.color``), for fp32 and INT8, and
  between the two outputs' lips;
* whether pixels outside the masks stay bit-identical to the input.

Speed: onnxruntime sessions set up as the engine sets them up (full graph
optimisation, sequential, ``threads`` intra-op threads, workers that sleep
rather than spin), fp32 and INT8 runs interleaved so both see the same
machine load, warm-up runs excluded, median of N (with quartiles).
Interleaving is only fair because the workers sleep: a spinning session
keeps busy-waiting on the cores for a while after its run, which is when the
other session runs (with two threads on two cores, that added 20 to 40 ms
to the interleaved runs; docs/benchmarks.md).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ipmcam.calibration import kernel_profile
from ipmcam.calibration.quantize import INT8_FILE, psnr
from ipmcam.engines.calibration_set import CalibrationSet
from ipmcam.engines.onnx_backend import physical_cores, session_options
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab
from ipmcam.ipmnet.weights import GENERATOR_FILES, read_manifest

log = logging.getLogger("ipmcam")

#: acceptance targets of the INT8 generator against fp32
TARGETS = {"speedup_batch1": 1.5, "psnr_db": 35.0, "lips_delta_e_gap": 1.0}
LIPS = 0  # mask channel of the lips (face.masks: lips, eye shadow, skin)


@dataclass
class ReportSettings:
    runs: int = 30  # timed runs per model and batch size
    warmup: int = 3
    batches: tuple[int, ...] = (1,)
    threads: tuple[int, ...] = (0,)  # 0: the engine's default (physical cores)
    max_crops: int = 64
    profile: bool = False  # also kernel time per operator class and the INT8 ceiling (calibration.kernel_profile)


def session(path: Path, threads: int, profile_prefix: str | None = None) -> Any:
    """An onnxruntime CPU session configured like ``engines.onnx_backend.OnnxBackend``; with
    ``profile_prefix``, profiled (``end_profiling`` writes the events to a file with that prefix)."""
    import onnxruntime as ort

    options = session_options(threads)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def lip_colours(images: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """Robust Lab lip colour (N, 3) of BGR images (N, S, S, 3) in pixel units under lip masks (N, S, S)."""
    return np.stack([robust_colour(to_lab(np.clip(img, 0, 255)), m) for img, m in zip(images, lips)])


def compare_outputs(fp32: np.ndarray, int8: np.ndarray, inputs: np.ndarray, masks: np.ndarray,
                    ref_lips: np.ndarray, label: str = "int8") -> dict[str, Any]:
    """Quality numbers for outputs (N,3,S,S) in [-1,1] of the same inputs; ``ref_lips`` (N,3) Lab per crop.

    ``int8`` is the output under test; ``label`` names it in the keys (``measure.fp16_check`` passes "fp16").
    """
    a, b = fp32 * 127.5, int8 * 127.5
    u = masks.max(axis=1, keepdims=True) > 0
    outside = np.broadcast_to(~u, a.shape)
    to_img = lambda t: (t.transpose(0, 2, 3, 1) + 127.5)  # noqa: E731  pixel units, BGR, HWC
    lips = masks[:, LIPS]
    lab32, lab8 = lip_colours(to_img(a), lips), lip_colours(to_img(b), lips)
    de32, de8 = delta_e2000(lab32, ref_lips), delta_e2000(lab8, ref_lips)
    return {
        "crops": int(len(a)),
        "psnr_db": round(psnr(b, a), 2),
        "psnr_makeup_region_db": round(psnr(b, a, u), 2),
        "psnr_worst_crop_makeup_region_db": round(min(psnr(b[i], a[i], u[i]) for i in range(len(a))), 2),
        "max_abs_error": round(float(np.abs(b - a).max()), 2),
        "mean_abs_error_makeup_region": round(float(np.abs(b - a)[np.broadcast_to(u, a.shape)].mean()), 3),
        "background_exact": bool(np.array_equal(b[outside], (inputs * 127.5)[outside])),
        "lips_delta_e_fp32_to_reference": round(float(de32.mean()), 3),
        f"lips_delta_e_{label}_to_reference": round(float(de8.mean()), 3),
        "lips_delta_e_gap": round(float(abs(de8.mean() - de32.mean())), 3),
        f"lips_delta_e_{label}_vs_fp32": round(float(delta_e2000(lab8, lab32).mean()), 3),
    }


def quality(fp32_session: Any, int8_session: Any, held_out: CalibrationSet, max_crops: int,
            label: str = "int8") -> dict[str, Any]:
    """Run both generators on the held-out crops (alpha 1, reference i mod R) and compare."""
    if len(held_out) == 0 or len(held_out.ref_crops) == 0:
        raise ValueError("the held-out set needs crops and references")
    ref_lips = np.stack([robust_colour(to_lab(c), m[LIPS].astype(np.float32) / 255)
                         for c, m in zip(held_out.ref_crops, held_out.ref_masks)])
    outs32, outs8, images, masks = [], [], [], []
    for feeds in held_out.generator_batches(4, max_crops, alphas=(1.0,)):
        outs32.append(fp32_session.run(["output"], feeds)[0])
        outs8.append(int8_session.run(["output"], feeds)[0])
        images.append(feeds["image"])
        masks.append(feeds["masks"])
    n = sum(len(o) for o in outs32)
    refs = ref_lips[np.arange(n) % len(ref_lips)]
    return compare_outputs(np.concatenate(outs32), np.concatenate(outs8), np.concatenate(images),
                           np.concatenate(masks), refs, label)


def latency(sessions: dict[str, Any], feeds: dict[str, np.ndarray], runs: int,
            warmup: int) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Median/quartile/min latency (ms) of each session on ``feeds``, runs interleaved across sessions;
    also the raw times (ms) per session, in run order."""
    for _ in range(warmup):
        for s in sessions.values():
            s.run(["output"], feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(runs):
        order = list(sessions.items())
        if i % 2:
            order.reverse()  # neither model always runs right after the other
        for name, s in order:
            start = time.perf_counter()
            s.run(["output"], feeds)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": round(float(np.median(t)), 2), "p25_ms": round(float(np.percentile(t, 25)), 2),
                   "p75_ms": round(float(np.percentile(t, 75)), 2), "min_ms": round(float(np.min(t)), 2),
                   "runs": len(t)} for name, t in times.items()}, times


def kernel_times(paths: dict[str, Path], feeds: dict[str, np.ndarray], threads: int, runs: int,
                 warmup: int) -> dict[str, Any]:
    """The interleaved runs of ``latency`` again, in profiled sessions: kernel time per operator class
    and the INT8 ceiling (``calibration.kernel_profile``). Separate sessions, because profiling slows
    the runs it records."""
    with tempfile.TemporaryDirectory(prefix="ipmcam-profile-") as tmp:
        sessions = {name: session(path, threads, profile_prefix=str(Path(tmp) / name))
                    for name, path in paths.items()}
        latency(sessions, feeds, runs, warmup)
        events = {name: json.loads(Path(s.end_profiling()).read_text()) for name, s in sessions.items()}
    return kernel_profile.summary(events, runs, warmup)


def build_report(model_dir: Path, held_out: CalibrationSet, settings: ReportSettings | None = None) -> dict[str, Any]:
    """The full report for ``model_dir`` (which must hold generator.int8.onnx)."""
    settings = settings or ReportSettings()
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    manifest.verify([GENERATOR_FILES["fp32"], INT8_FILE])
    held_out = held_out.with_styles_for(model_dir)
    paths = {"fp32": manifest.path(GENERATOR_FILES["fp32"]), "int8": manifest.path(INT8_FILE)}

    q = quality(session(paths["fp32"], 0), session(paths["int8"], 0), held_out, settings.max_crops)
    speed: dict[str, Any] = {}
    for threads in settings.threads:
        t = threads or physical_cores()
        for batch in settings.batches:
            feeds = next(held_out.generator_batches(batch, alphas=(1.0,)))
            if len(feeds["image"]) < batch:  # fewer held-out crops than the batch: repeat them
                reps = -(-batch // len(feeds["image"]))
                feeds = {k: np.ascontiguousarray(np.concatenate([v] * reps)[:batch]) for k, v in feeds.items()}
            sessions = {name: session(path, t) for name, path in paths.items()}
            r, times = latency(sessions, feeds, settings.runs, settings.warmup)
            r["speedup"] = round(r["fp32"]["median_ms"] / r["int8"]["median_ms"], 3)
            # Ratio of the two runs of each round, then the median: robust to load that drifts during the run.
            r["speedup_paired"] = round(float(np.median(np.array(times["fp32"]) / np.array(times["int8"]))), 3)
            if settings.profile:
                r["kernels"] = kernel_times(paths, feeds, t, settings.runs, settings.warmup)
            speed[f"threads{t}_batch{batch}"] = r
    default = speed.get(f"threads{physical_cores()}_batch1") or next(iter(speed.values()))
    checks = {
        "speedup_batch1": {"value": default["speedup"], "target": f">= {TARGETS['speedup_batch1']}",
                           "met": bool(default["speedup"] >= TARGETS["speedup_batch1"])},
        "psnr_db": {"value": q["psnr_makeup_region_db"], "target": f">= {TARGETS['psnr_db']} (makeup region)",
                    "met": bool(q["psnr_makeup_region_db"] >= TARGETS["psnr_db"])},
        "lips_delta_e_gap": {"value": q["lips_delta_e_gap"], "target": f"<= {TARGETS['lips_delta_e_gap']}",
                             "met": bool(q["lips_delta_e_gap"] <= TARGETS["lips_delta_e_gap"])},
        "background_exact": {"value": q["background_exact"], "target": "true", "met": q["background_exact"]},
    }
    import onnxruntime as ort

    quant_info = model_dir / "generator.int8.json"
    return {
        "model_dir": str(model_dir),
        "model_config": manifest.config_name,
        "generator_sha256": {k: manifest.files[p.name]["sha256"] for k, p in paths.items()},
        "quantization": json.loads(quant_info.read_text()).get("settings") if quant_info.is_file() else None,
        "held_out_set": {k: held_out.manifest.get(k) for k in ("file", "sha256", "counts", "split")},
        "held_out_identities": sorted(set(held_out.identities.tolist())),
        "onnxruntime": ort.__version__,
        "cpu": cpu_name(),
        "settings": asdict(settings),
        "quality": q,
        "latency": speed,
        "targets": checks,
        "all_targets_met": bool(all(c["met"] for c in checks.values())),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def format_report(report: dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    q = report["quality"]
    lines = [
        f"model {report['model_dir']} ({report['model_config']}), onnxruntime {report['onnxruntime']}, {report['cpu']}",
        f"quality on {q['crops']} held-out crops: PSNR {q['psnr_db']} dB (makeup region {q['psnr_makeup_region_db']} dB, "
        f"worst crop {q['psnr_worst_crop_makeup_region_db']} dB), max |err| {q['max_abs_error']} levels, "
        f"background exact: {q['background_exact']}",
        f"lips dE2000 to reference: fp32 {q['lips_delta_e_fp32_to_reference']}, int8 {q['lips_delta_e_int8_to_reference']} "
        f"(gap {q['lips_delta_e_gap']}); int8 vs fp32 lips {q['lips_delta_e_int8_vs_fp32']}",
    ]
    for key, r in report["latency"].items():
        lines.append(f"latency {key}: fp32 {r['fp32']['median_ms']} ms, int8 {r['int8']['median_ms']} ms "
                     f"(median of {r['fp32']['runs']}; fastest {r['fp32']['min_ms']} / {r['int8']['min_ms']} ms), "
                     f"speed-up x{r['speedup']} (paired x{r['speedup_paired']})")
        if "kernels" in r:
            k = r["kernels"]
            fp32, int8 = (", ".join(f"{c} {v:.1f}" for c, v in k["kernel_ms"][p].items()) for p in ("fp32", "int8"))
            lines.append(f"  kernel ms per run: fp32 {fp32}; int8 {int8}")
            lines.append(f"  convolutions x{k['conv_speedup']} ({k['conv_share_fp32']:.0%} of fp32), all kernels "
                         f"x{k['kernel_speedup']}, ceiling x{k['ceiling']} (int8 changing only the convolutions)")
    for name, c in report["targets"].items():
        lines.append(f"  {'met    ' if c['met'] else 'NOT met'} {name}: {c['value']} (target {c['target']})")
    return "\n".join(lines)
