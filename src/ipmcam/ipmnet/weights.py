"""Model files on disk: safetensors weights and the manifest that vouches for a model directory.

A model directory (``weights/<config>/`` or $IPMCAM_WEIGHTS) holds the
exported graphs, the weights and ``manifest.json``: the config the graphs
were built from and the size and sha256 of every file. Engines verify the
files they are about to load, so a truncated download or a hand-edited graph
fails with one line that names the file and the fix instead of a crash deep
inside a runtime.

The manifest functions are pure Python (engines running on onnxruntime do
not need torch); torch and safetensors are imported only to save and load
weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ipmcam.errors import EngineError
from ipmcam.ipmnet.config import IPMNetConfig

if TYPE_CHECKING:
    from torch import nn

MANIFEST = "manifest.json"
WEIGHTS_FILE = "ipmnet.safetensors"
STYLE_ENCODER = "style_encoder.onnx"
#: generator graph per precision; the INT8 (QDQ) one is written by calibration/
#: and registered with ``add_to_manifest``
GENERATOR_FILES = {"fp32": "generator.onnx", "fp16": "generator.fp16.onnx", "int8": "generator.int8.onnx"}
FORMAT = "ipmcam-model/1"
QUANTIZE_HINT = ("make it with `ipmcam calibrate build-set --model-dir {root}` then "
                 "`ipmcam calibrate quantize --model-dir {root}`")
EXPORT_HINT = "re-export it with `python -m ipmcam.ipmnet.export --config <name> --weights <file> --out <dir>`"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def created_by() -> str:
    """"ipmcam <version>", from the installed distribution when there is one."""
    try:
        return f"ipmcam {metadata.version('ipmcam')}"
    except metadata.PackageNotFoundError:
        return "ipmcam (source checkout)"


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about a model directory."""

    root: Path
    config_name: str
    config: IPMNetConfig
    opset: int
    files: dict[str, dict[str, Any]]

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        return name in self.files

    def verify(self, names: Iterable[str]) -> None:
        """Check that each named file is listed, present, complete and unmodified; EngineError if not."""
        for name in names:
            entry = self.files.get(name)
            path = self.root / name
            hint = QUANTIZE_HINT.format(root=self.root) if name == GENERATOR_FILES["int8"] else EXPORT_HINT
            if entry is None:
                raise EngineError(f"{path.name} is not part of the model in {self.root}: {hint}")
            if not path.is_file():
                raise EngineError(f"model file {path} is missing: {hint}")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise EngineError(
                    f"model file {path} is truncated or incomplete ({size} of {entry['bytes']} bytes): {hint}"
                )
            if sha256_file(path) != entry["sha256"]:
                raise EngineError(
                    f"model file {path} does not match its manifest checksum (corrupted or modified): {hint}"
                )


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_manifest(root: Path, config_name: str, config: IPMNetConfig, files: Iterable[str], opset: int) -> Path:
    """Hash ``files`` (names inside ``root``) and write ``root/manifest.json``."""
    data = {
        "format": FORMAT,
        "created_by": created_by(),
        "config_name": config_name,
        "config": config.to_dict(),
        "opset": opset,
        "files": {name: _file_entry(root / name) for name in sorted(files)},
    }
    path = root / MANIFEST
    _write_json_atomic(path, data)
    return path


def add_to_manifest(root: Path, name: str) -> None:
    """Register one more file written into an exported directory (e.g. the INT8 graph from ipmcam.calibration)."""
    path = root / MANIFEST
    data = json.loads(path.read_text())
    data["files"][name] = _file_entry(root / name)
    _write_json_atomic(path, data)


def read_manifest(root: Path) -> Manifest:
    """Parse ``root/manifest.json``; EngineError (one line, with the fix) when absent or unreadable."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise EngineError(f"no model manifest at {path}: {EXPORT_HINT}, or point IPMCAM_WEIGHTS at a model directory")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        return Manifest(
            root=Path(root),
            config_name=data["config_name"],
            config=IPMNetConfig.from_dict(data["config"]),
            opset=int(data["opset"]),
            files=dict(data["files"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"model manifest {path} is unreadable ({exc}): {EXPORT_HINT}") from None


def save_weights(model: nn.Module, path: Path, config: IPMNetConfig | None = None) -> None:
    """Write the model's state dict as safetensors, with the config in the file's metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"ipmnet_config": json.dumps(config.to_dict())} if config is not None else None
    save_file(state, str(path), metadata=meta)


#: safetensors dtype names -> torch dtype names
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def read_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file, read without the safetensors package.

    For a GPU machine with a system torch and no way to install packages
    (``make gpu-check`` runs there as it is). The format is small and fixed:
    an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and byte range, then the raw little-endian data.
    Raises ValueError for a file that is not one.
    """
    import torch

    raw = Path(path).read_bytes()
    try:
        (length,) = struct.unpack_from("<Q", raw)
        header = json.loads(raw[8 : 8 + length])
        data = memoryview(raw)[8 + length :]
        state = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]])
            chunk = bytearray(data[start:end])
            flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
            state[name] = flat.reshape(info["shape"])
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"not a safetensors file ({exc})") from None
    return state


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load safetensors weights into ``model`` (strict); EngineError for an unreadable or mismatched file."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"weights file {path} is missing: train a model or point IPMCAM_WEIGHTS at a model directory")
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:  # not installed: the format is read directly
        SafetensorError, load_file = ValueError, read_safetensors  # noqa: N806
    try:
        state = load_file(str(path))
    except (SafetensorError, ValueError, OSError) as exc:
        raise EngineError(f"weights file {path} is unreadable ({exc}): re-download or re-train it") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise EngineError(f"weights file {path} does not fit this model config ({first}): check --config") from None
    return model


TRAIN_STATE = "train_state.pt"


def save_train_state(checkpoint: Path, dest: Path) -> None:
    """Copy a training checkpoint small enough to ship beside the weights (under 10 MB for ``lite``).

    The generator's weights stay fp32; Adam's two moment buffers, two thirds
    of a checkpoint, are stored in bfloat16 (fp32's range, so the tiny second
    moments do not underflow as they would in fp16). Loading the optimiser
    casts them back to fp32, so a run resumed from this file continues close
    to the original, not bit for bit: the exact checkpoint stays in the run
    folder. Written atomically.
    """
    import torch

    state = torch.load(checkpoint, weights_only=False)
    for slots in state["opt_g"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in slots:
                slots[key] = slots[key].to(torch.bfloat16)
    tmp = dest.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, dest)
