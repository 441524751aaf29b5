"""ipmcam: real-time makeup transfer for webcams.

Packages, bottom to top (docs/architecture.md): ``face`` (tracking, alignment,
region masks), ``ipmnet`` (the model, its renderer and training), ``engines``
(makeup engines and their runtimes), ``calibration`` (INT8) and ``realtime``
(the live application), ``measure`` and ``studio``, and ``cli`` over them all.
"""
__version__ = "0.1.0"
