"""Export an IPM-Net model directory: two ONNX graphs, the weights and a manifest.

    python -m ipmcam.ipmnet.export --config lite --weights weights.safetensors --out src/ipmcam/weights/lite [--fp16]
    python -m ipmcam.ipmnet.export --config lite --checkpoint runs/lite/checkpoint.pt --out out/lite
    python -m ipmcam.ipmnet.export --config lite --weights src/ipmcam/weights/lite/ipmnet.safetensors \
        --out src/ipmcam/weights/lite --add-fp16

* ``style_encoder.onnx``: image (N,3,S,S), masks (N,C,S,S) -> style (N,style_dim).
  Run once per reference.
* ``generator.onnx``: image, masks, style (N,style_dim), alpha (N,1) -> output
  (N,3,S,S). Run per frame; preprocessing and the residual composition are
  inside the graph.
* ``generator.fp16.onnx`` with ``--fp16``: the learned networks in fp16, the
  preprocessing, style mix and composition in fp32, and fp32 inputs and
  outputs, so callers do not change and pixels outside the masks stay exact.
  ``--add-fp16`` writes only this graph into an existing model directory
  exported from the same weights and lists it in its manifest, leaving the
  other files (and an INT8 graph quantized from them) as they are.
* ``ipmnet.safetensors``: the weights, for the torch backend.

Images are float32 in [-1, 1], BGR, NCHW; the batch axis is dynamic. Opset 17
is what TensorRT 10 parses.
"""
from __future__ import annotations

import argparse
import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ipmcam.ipmnet import onnx_graph
from ipmcam.ipmnet.config import CONFIGS, IPMNetConfig, get_config
from ipmcam.ipmnet.networks import Generator
from ipmcam.ipmnet.weights import (
    GENERATOR_FILES,
    STYLE_ENCODER,
    TRAIN_STATE,
    WEIGHTS_FILE,
    add_to_manifest,
    load_weights,
    read_manifest,
    save_train_state,
    save_weights,
    sha256_file,
    write_manifest,
)

OPSET = 17
GENERATOR = GENERATOR_FILES["fp32"]
GENERATOR_FP16 = GENERATOR_FILES["fp16"]

log = logging.getLogger("ipmcam")


class StyleEncoderGraph(nn.Module):
    """The generator's ES alone, with the exported graph's signature."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.generator.encode_style(image, masks)


def example_inputs(generator: Generator, batch: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    """Tracing inputs: batch 2, so no size-1 broadcast is baked into the graph, and a small crop.

    Tracing runs the network once; at the real crop size that takes half a
    minute for the fp16 variant on a CPU. The graph is fully convolutional, so
    it is traced small with dynamic spatial axes and then pinned to the crop
    size (``_pin_sizes``); the parity tests run it at full size.
    """
    cfg = generator.cfg
    gen = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand((batch, 3, size, size), generator=gen) * 2 - 1,
        "masks": torch.rand((batch, cfg.n_masks, size, size), generator=gen),
        "style": torch.randn((batch, cfg.style_dim), generator=gen),
        "alpha": torch.ones((batch, 1)),
    }


def _pin_sizes(model: onnx.ModelProto, size: int, style_dim: int) -> None:
    """Fix the traced-dynamic sizes of the inputs and outputs: images ``size`` square, style codes
    ``style_dim`` long (the colour part of a code is averaged over dynamic pixels, so tracing leaves
    its length symbolic)."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        pinned = {2: size, 3: size} if len(dims) == 4 else {1: style_dim} if value.name == "style" else {}
        for axis, length in pinned.items():
            dims[axis].Clear()
            dims[axis].dim_value = length


def _constant_array(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` if an initializer or a Constant node holds it."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return None if value is None else numpy_helper.to_array(value)
    return None


def _folds_into_convs(gather: onnx.NodeProto, order: np.ndarray | None, users: dict[str, list[onnx.NodeProto]],
                      initializers: dict[str, onnx.TensorProto]) -> bool:
    """Whether ``gather`` permutes channels (axis 1, a constant permutation ``order``) and only plain
    convolutions read it, as their data input, each with weights of its own."""
    axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
    if axis != 1 or order is None or order.ndim != 1 or sorted(order.tolist()) != list(range(len(order))):
        return False
    readers = users.get(gather.output[0], [])
    return bool(readers) and all(
        r.op_type == "Conv" and r.input[0] == gather.output[0] and gather.output[0] not in r.input[1:]
        and r.input[1] in initializers and len(users[r.input[1]]) == 1
        and next((a.i for a in r.attribute if a.name == "group"), 1) == 1
        and initializers[r.input[1]].dims[1] == len(order) for r in readers)


def fold_channel_gathers(model: onnx.ModelProto) -> int:
    """Fold a channel permutation (Gather on axis 1) read only by convolutions into their weights.

    ``Unshuffle`` exports as SpaceToDepth plus a Gather that restores torch's
    channel order; the convolution after it can read SpaceToDepth's order
    instead if its weights' input channels are permuted the same way:
    ``sum_k W[:, k] x[order[k]] = sum_j W'[:, j] x[j]`` with
    ``W'[:, order[k]] = W[:, k]``. That drops a copy of the encoders'
    144- and 96-channel 64x64 inputs from every frame, in every precision,
    and INT8 quantizes the same convolution. Returns how many Gathers went.
    """
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    users = onnx_graph.consumers(graph)
    folded = []
    for gather in (n for n in graph.node if n.op_type == "Gather"):
        order = _constant_array(model, gather.input[1])
        if not _folds_into_convs(gather, order, users, initializers):
            continue
        for conv in users[gather.output[0]]:
            init = initializers[conv.input[1]]
            weight = numpy_helper.to_array(init)
            permuted = np.empty_like(weight)
            permuted[:, order] = weight
            init.CopyFrom(numpy_helper.from_array(permuted, init.name))
            conv.input[0] = gather.input[0]
        folded.append(gather)
    for gather in folded:
        graph.node.remove(gather)
    used = {name for n in graph.node for name in n.input}
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)
    return len(folded)


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
    cfg: IPMNetConfig,
) -> None:
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    for name in ("image", "masks", "output"):
        if name in dynamic:
            dynamic[name].update({2: "height", 3: "width"})
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one,
        # which needs onnxscript; its graphs are the same ops here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # Instance norm always uses the statistics of its input (no running stats), which is what we want.
        warnings.filterwarnings("ignore", message=".*operator 'instance_norm' is set to train=True")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    fold_channel_gathers(model)
    _pin_sizes(model, cfg.crop_size, cfg.style_dim)
    del model.graph.value_info[:]  # traced with symbolic sizes: infer the pinned ones afresh
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.producer_name = "ipmcam"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_style_encoder(generator: Generator, path: Path) -> None:
    ex = example_inputs(generator)
    inputs = (ex["image"], ex["masks"])
    _export(StyleEncoderGraph(generator).eval(), inputs, path, ["image", "masks"], ["style"], generator.cfg)


def export_generator(generator: Generator, path: Path) -> None:
    ex = example_inputs(generator)
    args = (ex["image"], ex["masks"], ex["style"], ex["alpha"])
    _export(generator.eval(), args, path, ["image", "masks", "style", "alpha"], ["output"], generator.cfg)


def export_model(generator: Generator, config_name: str, out_dir: Path, fp16: bool = False) -> Path:
    """Write a complete model directory for ``generator``; returns the manifest path."""
    if config_name in CONFIGS and generator.cfg != CONFIGS[config_name]:
        log.warning("exporting a generator whose config differs from the named config %r", config_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = generator.float().eval()
    save_weights(generator, out_dir / WEIGHTS_FILE, generator.cfg)
    export_style_encoder(generator, out_dir / STYLE_ENCODER)
    export_generator(generator, out_dir / GENERATOR)
    files = [WEIGHTS_FILE, STYLE_ENCODER, GENERATOR]
    if fp16:
        export_generator(copy.deepcopy(generator).half_core(), out_dir / GENERATOR_FP16)
        files.append(GENERATOR_FP16)
    return write_manifest(out_dir, config_name, generator.cfg, files, OPSET)


def add_fp16(generator: Generator, out_dir: Path) -> Path:
    """Write ``generator.fp16.onnx`` into the exported directory ``out_dir`` and register it in its manifest."""
    out_dir = Path(out_dir)
    export_generator(copy.deepcopy(generator.float().eval()).half_core(), out_dir / GENERATOR_FP16)
    add_to_manifest(out_dir, GENERATOR_FP16)
    return out_dir / GENERATOR_FP16


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ipmcam.ipmnet.export", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite", help="config name: lite or full")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="trained weights (.safetensors)")
    source.add_argument("--checkpoint", type=Path, help="a training checkpoint (runs/<name>/checkpoint.pt); "
                        f"its compact copy is written as {TRAIN_STATE} beside the model")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--fp16", action="store_true", help="also write generator.fp16.onnx")
    parser.add_argument("--add-fp16", action="store_true",
                        help="only add generator.fp16.onnx to the model directory --out, exported from the same "
                        "--weights; its other files stay as they are")
    args = parser.parse_args(argv)
    if args.add_fp16:
        if args.weights is None:
            parser.error("--add-fp16 takes --weights (the model directory's own ipmnet.safetensors)")
        listed = read_manifest(args.out).files.get(WEIGHTS_FILE, {}).get("sha256")
        if listed != sha256_file(args.weights):
            parser.error(f"--weights {args.weights} are not the weights of the model in {args.out}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generator = Generator(get_config(args.config))
    if args.checkpoint is not None:
        import torch

        generator.load_state_dict(torch.load(args.checkpoint, weights_only=False)["gen"])
    else:
        load_weights(generator, args.weights)
    if args.add_fp16:
        log.info("wrote %s", add_fp16(generator, args.out))
        return
    manifest = export_model(generator, args.config, args.out, fp16=args.fp16)
    if args.checkpoint is not None:  # keep the run resumable from the model folder (--resume-from)
        save_train_state(args.checkpoint, args.out / TRAIN_STATE)
    log.info("wrote %s", manifest)


if __name__ == "__main__":
    main()
