"""Who writes and who reads each tensor of an ONNX graph.

The exporter's graph rewrites (``ipmnet.export``) and the INT8 quantizer's
(``calibration.quantize``) both walk the graph by these two maps. Torch-free,
so the calibration layer can use it without loading torch.
"""
from __future__ import annotations

from typing import Any


def producers(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in graph.node for out in node.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it, in graph order (a node reading it twice is listed twice)."""
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users
