"""Static QDQ INT8 quantization of ``generator.onnx`` into ``generator.int8.onnx``.

What is quantized, and why (see ``float_nodes``):

* The learned convolutions (identity encoder, the generator's copy of the
  style encoder, decoder) and, in the strided ``full`` network, the
  decoder's nearest-neighbour upsampling.
  onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into
  QLinearConv and runs Resize directly on int8; TensorRT parses the same
  Q/DQ pairs as explicit quantization.
* The Relus between two quantized convolutions, as LeakyRelu with slope 0
  (``int8_relus``): onnxruntime runs them as int8 lookups instead of a
  dequantize, a float Relu and a quantize.
* Everything else stays float: the IPM-Net preprocessing (mask union, grey
  fill, texture high-pass), the style mix, the final composition
  ``clamp(r + u * residual)`` (so pixels outside the masks stay bit-identical
  to the input, as in fp32), instance norm and the AdaIN scale/shift (the
  statistics and the style live there, region-wise or not), the style MLP
  (one tiny Gemm chain per frame). The quantizer rewires every consumer of a quantized tensor to
  its DequantizeLinear output, including float ones; ``restore_float_inputs``
  gives float readers their float tensor back, except where the tensor is a
  quantized convolution's output (that one stays int8 so the convolution
  fuses; its readers, the norms and the composition, dequantize it).

Activations are symmetric int8 and weights symmetric per-channel int8 by
default: the format TensorRT's explicit quantization needs (zero point 0).
``uint8`` activations are available for onnxruntime-only deployments
(onnxruntime folds their Relus into the quantization's clamp).

What decides the speed on onnxruntime's CPU provider (x86 AVX2 without
VNNI): QLinearConv beats the fp32 convolution on dense convolutions over
many channels; depthwise convolutions and 3-channel full-resolution ones run
slower in int8, and every float island (an instance norm or AdaIN after a
convolution) costs a DequantizeLinear, a QuantizeLinear and two NHWC/NCHW
Transposes. The ``lite`` network is built for that: pixel (un)shuffle puts
every convolution at 64x64 as a dense 3x3 over 48-64 channels, its identity
encoder has no norm, and the decoder's six AdaIN layers are the only
islands. A quantized tensor read by a float node as well (a skip connection)
must get its own float copy or the reader's DequantizeLinear is shared and
the convolution is not fused at all (see ``restore_float_inputs``).
``ipmcam calibrate report`` measures the result (docs/benchmarks.md); on a
GPU, TensorRT runs the same Q/DQ graph as fused int8 kernels.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ipmcam.engines.calibration_set import CalibrationSet
from ipmcam.ipmnet import onnx_graph
from ipmcam.ipmnet.weights import GENERATOR_FILES, add_to_manifest, read_manifest

log = logging.getLogger("ipmcam")

#: name prefixes of the learned sub-networks in the exported generator graph (module paths)
LEARNED_PREFIXES = ("/enc_id/", "/enc_style/", "/dec/", "/mlp/")
METHODS = ("entropy", "percentile", "minmax")
ACTIVATION_TYPES = ("int8", "uint8")
CONV_POLICIES = ("all", "pointwise")
#: op types that get Q/DQ; everything else stays float (LeakyRelu: see ``int8_relus``)
QUANTIZED_OPS = ("Conv", "Resize", "LeakyRelu")
INT8_FILE = "generator.int8.onnx"
#: reason given to the nodes outside the learned networks; only these get their float inputs back
GLUE = "preprocessing / style mix / composition (exact background)"
REPORT_FILE = "generator.int8.json"


@dataclass
class QuantizeSettings:
    """Choices of one quantization run (recorded in its report)."""

    method: str = "percentile"
    activation_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    percentile: float = 99.999
    samples: int = 64  # calibration crops fed
    batch: int = 4
    #: keep the decoder's output convolution float (the residual's last layer)
    float_output_conv: bool = False
    #: keep the identity encoder's first convolution (reads the 3-channel preprocessed image) float
    float_input_conv: bool = False
    quantize_resize: bool = True
    #: "all" learned convolutions, or only "pointwise" (1x1) ones, the only kind int8 speeds up on a
    #: CPU without VNNI (depthwise, 3-channel and 3-output convolutions run slower in int8 there)
    convs: str = "all"
    extra_exclude: tuple[str, ...] = ()
    #: run the Relus between two quantized convolutions on the int8 tensor (``int8_relus``); int8 only
    int8_relus: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose {', '.join(METHODS)}")
        if self.convs not in CONV_POLICIES:
            raise ValueError(f"unknown conv policy {self.convs!r}; choose {', '.join(CONV_POLICIES)}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise ValueError(f"unknown activation type {self.activation_type!r}; choose {', '.join(ACTIVATION_TYPES)}")


# --------------------------------------------------------------------------- graph analysis

def output_conv(graph: Any) -> str | None:
    """The convolution that makes the decoder's residual: the last Conv upstream of the graph output."""
    producers = onnx_graph.producers(graph)
    stack, seen = [o.name for o in graph.output], set()
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            return node.name
        stack += list(node.input)
    return None


def input_conv(graph: Any) -> str | None:
    """The identity encoder's first convolution (it reads the preprocessed image)."""
    convs = [n for n in graph.node if n.op_type == "Conv" and n.name.startswith("/enc_id/")]
    return convs[0].name if convs else None


def float_nodes(model: Any, settings: QuantizeSettings | None = None) -> dict[str, str]:
    """Nodes kept in float, name -> reason."""
    settings = settings or QuantizeSettings()
    graph = model.graph
    keep: dict[str, str] = {}
    for node in graph.node:
        if not node.name.startswith(LEARNED_PREFIXES):
            keep[node.name] = GLUE
        elif node.op_type == "InstanceNormalization":
            keep[node.name] = "instance-norm statistics"
        elif "/norm" in node.name and node.name.startswith("/dec/"):
            keep[node.name] = "AdaIN scale and shift"
        elif node.name.startswith("/mlp/"):
            keep[node.name] = "style MLP"
        elif node.op_type == "Resize" and not settings.quantize_resize:
            keep[node.name] = "upsampling kept float"
    if settings.convs == "pointwise":
        weights = {i.name: tuple(i.dims) for i in graph.initializer}
        for node in graph.node:
            if node.op_type != "Conv" or node.name in keep:
                continue
            shape = weights.get(node.input[1], ())
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if len(shape) != 4 or shape[2:] != (1, 1) or group != 1 or min(shape[:2]) < 8:
                keep[node.name] = "not pointwise: int8 slower than float on CPU"
        for node in graph.node:
            if node.op_type == "Resize":
                keep.setdefault(node.name, "upsampling between float convolutions")
    if settings.float_output_conv and (name := output_conv(graph)):
        keep[name] = "decoder output convolution"
    if settings.float_input_conv and (name := input_conv(graph)):
        keep[name] = "identity encoder input convolution"
    for name in settings.extra_exclude:
        keep[name] = "excluded by request"
    return keep


def int8_relus(model: Any, keep: dict[str, str]) -> list[str]:
    """Turn each Relu between two quantized convolutions into LeakyRelu with slope 0; returns their names.

    onnxruntime has no int8 Relu. In a symmetric-int8 graph (zero point 0,
    so the Relu cannot fold into the quantization's clamp) it runs
    DequantizeLinear, a float Relu and QuantizeLinear between the two
    convolutions: three passes over the tensor, the first and the last
    parallelised across the cores. LeakyRelu with slope 0 is the same
    function, and onnxruntime runs its Q/DQ group as one QLinearLeakyRelu, a
    256-entry lookup on the int8 tensor, giving the same values; TensorRT
    reads it as the same activation. Only Relus fed by a convolution and
    read by convolutions alone, none kept float: a Relu also read by a float
    node (a skip connection) keeps its float output.
    """
    from onnx import helper

    producers, consumers = onnx_graph.producers(model.graph), onnx_graph.consumers(model.graph)
    names = []
    for node in model.graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Relu" else None
        readers = consumers.get(node.output[0], []) if source is not None else []
        if (source is not None and source.op_type == "Conv" and source.name not in keep and node.name not in keep
                and readers and all(r.op_type == "Conv" and r.name not in keep for r in readers)):
            node.op_type = "LeakyRelu"
            node.attribute.append(helper.make_attribute("alpha", 0.0))
            names.append(node.name)
    return names


def restore_float_inputs(model: Any, quantized: set[str]) -> int:
    """Give float nodes back the float tensors that the quantizer replaced with dequantized copies.

    onnxruntime's quantizer points *every* consumer of a quantized tensor at
    its DequantizeLinear output. For a float consumer that only adds rounding
    error (the residual path of a skip connection, the final composition with
    the preprocessed image) and, for a tensor read by several nodes, a shared
    DequantizeLinear, which keeps onnxruntime from fusing the quantized reader
    into QLinearConv. So every node not in ``quantized`` reads the original
    tensor again, unless that tensor is itself the output of a quantized node
    (a convolution's int8 output has to stay quantized for the fusion, and
    its float readers take the DequantizeLinear). Q/DQ nodes left without
    readers are removed. Returns how many inputs were rewired.
    """
    graph = model.graph
    producers = onnx_graph.producers(graph)
    initializers = {i.name for i in graph.initializer}
    rewired = 0
    for node in graph.node:
        if node.name in quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in initializers:
                continue
            source = producers.get(q.input[0])
            if source is not None and source.name in quantized:
                continue
            node.input[k] = q.input[0]
            rewired += 1
    # Drop Q/DQ nodes nobody reads any more (repeat: removing a DQ can orphan its Q).
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    return rewired


def quantized_tensors_reaching(model: Any, names: set[str], quantized: set[str]) -> list[str]:
    """Inputs of the nodes ``names`` that are dequantized copies of float tensors (should be none).

    A dequantized output of a quantized node (the decoder's residual) is allowed.
    """
    producers = onnx_graph.producers(model.graph)
    initializers = {i.name for i in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.name in names:
            for name in node.input:
                dq = producers.get(name)
                if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] not in initializers:
                    q = producers.get(dq.input[0])
                    source = producers.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
                    if q is not None and q.op_type == "QuantizeLinear" and (source is None or source.name not in quantized):
                        bad.append(f"{node.name}:{name}")
    return bad


# --------------------------------------------------------------------------- calibration data

class SetReader:
    """onnxruntime CalibrationDataReader over a calibration set's generator feeds.

    It supports ``set_range``, so onnxruntime calibrates one batch at a time
    (``CalibStridedMinMax``): its histogram calibrators otherwise keep every
    intermediate tensor of every sample in memory until the end (about 240 MB
    per 256x256 crop for the lite generator).
    """

    def __init__(self, calib: CalibrationSet, batch: int, samples: int) -> None:
        self.calib, self.batch = calib, batch
        self.n_batches = max(1, min(samples, len(calib)) // batch)
        self.set_range(0, self.n_batches)

    def __len__(self) -> int:
        return self.n_batches

    def set_range(self, start_index: int, end_index: int) -> None:
        feeds = self.calib.generator_batches(self.batch, self.n_batches * self.batch)
        self._feeds: Iterator[dict[str, np.ndarray]] = itertools.islice(feeds, start_index, end_index)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _reader(calib: CalibrationSet, settings: QuantizeSettings) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(SetReader, CalibrationDataReader):
        pass

    return Reader(calib, settings.batch, settings.samples)


# --------------------------------------------------------------------------- quantization

def preprocess_graph(src: Path, dst: Path) -> None:
    """onnxruntime's quantization pre-processing: constant folding, shape inference, clean-up.

    Symbolic shape inference cannot follow the reflect-padding amounts the
    preprocessing computes from tensor shapes, so ONNX's shape inference is used.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def quantize_model(fp32_path: Path, out_path: Path, calib: CalibrationSet,
                   settings: QuantizeSettings | None = None) -> dict[str, Any]:
    """Write the QDQ model for ``fp32_path`` to ``out_path``; returns what was done (for the report)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = settings or QuantizeSettings()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ipmcam-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        preprocess_graph(fp32_path, pre)
        model = onnx.load(str(pre))
        keep = float_nodes(model, settings)
        symmetric = settings.activation_type == "int8"
        relus = int8_relus(model, keep) if settings.int8_relus and symmetric else []
        if relus:
            onnx.save(model, str(pre))
        method = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
                  "minmax": CalibrationMethod.MinMax}[settings.method]
        # One batch per calibration step keeps memory bounded (see SetReader).
        extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "CalibStridedMinMax": 1}
        if settings.method == "percentile":
            extra["CalibPercentile"] = settings.percentile
        raw = Path(tmp) / "int8.onnx"
        chatter = io.StringIO()  # the histogram calibrators print progress lines
        with contextlib.redirect_stdout(chatter):
            quantize_static(
                str(pre), str(raw), _reader(calib, settings),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(keep),
                calibrate_method=method,
                calibration_providers=["CPUExecutionProvider"],
                extra_options=extra,
            )
        qmodel = onnx.load(str(raw))
    quantized = {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS} - set(keep)
    rewired = restore_float_inputs(qmodel, quantized)
    glue = {name for name, reason in keep.items() if reason == GLUE}
    leaks = quantized_tensors_reaching(qmodel, glue, quantized)
    if leaks:
        raise RuntimeError(f"quantized tensors still reach float nodes: {leaks[:5]}")
    qmodel.producer_name = "ipmcam"
    onnx.checker.check_model(qmodel)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(qmodel, str(out_path))
    counts: dict[str, int] = {}
    for node in qmodel.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {
        "settings": asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
        "quantized_nodes": sorted(quantized),
        "float_nodes": {name: reason for name, reason in sorted(keep.items())
                        if any(n.name == name and n.op_type in QUANTIZED_OPS + ("InstanceNormalization",)
                               for n in model.graph.node)},
        "float_inputs_restored": rewired,
        "int8_relus": relus,
        "qdq_nodes": counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0),
        "tensorrt_compatible": symmetric,
    }


def fused_op_counts(model_path: Path, threads: int = 1) -> dict[str, int]:
    """Op types of the graph onnxruntime actually runs on this CPU (after its QDQ fusions)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ipmcam-opt-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def psnr(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None, peak: float = 255.0) -> float:
    """PSNR in dB between images in pixel units; ``weight`` (broadcastable) restricts the mean."""
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if weight is not None:
        w = np.broadcast_to(weight, err.shape).astype(np.float64)
        mse = float((err * w).sum() / max(w.sum(), 1e-12))
    else:
        mse = float(err.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def quantize(model_dir: Path, calib: CalibrationSet, settings: QuantizeSettings | None = None,
             register: bool = True, check_samples: int = 8) -> dict[str, Any]:
    """Quantize ``model_dir``'s generator into ``model_dir/generator.int8.onnx`` and its JSON report.

    The set's styles are recomputed first if they came from another style
    encoder. With ``register`` the INT8 graph is added to ``manifest.json``, so
    ``--precision int8`` loads it. The report includes a quick fp32/int8
    comparison on a few calibration crops (the held-out numbers come from
    ``calibration.report``).
    """
    import onnxruntime as ort

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    manifest.verify([GENERATOR_FILES["fp32"]])
    calib = calib.with_styles_for(model_dir)
    fp32_path = manifest.path(GENERATOR_FILES["fp32"])
    out_path = model_dir / INT8_FILE
    info = quantize_model(fp32_path, out_path, calib, settings)
    if register:
        add_to_manifest(model_dir, INT8_FILE)

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (fp32_path, out_path)]
    feeds = next(calib.generator_batches(check_samples))
    ref, out = (s.run(["output"], feeds)[0] * 127.5 for s in sessions)
    u = feeds["masks"].max(axis=1, keepdims=True) > 0
    info["check_on_calibration_crops"] = {
        "crops": int(len(feeds["image"])),
        "psnr_db": round(psnr(out, ref), 2),
        "psnr_masked_db": round(psnr(out, ref, u), 2),
        "max_abs_error": round(float(np.abs(out - ref).max()), 3),
        "background_exact": bool(np.array_equal(np.where(u, 0, out), np.where(u, 0, feeds["image"] * 127.5))),
    }
    info.update(
        model_dir=str(model_dir),
        output=str(out_path),
        calibration_set={k: calib.manifest.get(k) for k in ("file", "sha256", "counts", "split")},
        onnxruntime_ops=fused_op_counts(out_path),
    )
    (model_dir / REPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info
