"""INT8 post-training quantization of the IPM-Net generator.

* ``calibration.dataset``: calibration sets of aligned face crops, region
  masks and reference style codes, built through the live pipeline's tracker
  and aligner, deduplicated, held-out identities kept out.
* ``calibration.quantize``: static QDQ quantization of ``generator.onnx``
  with onnxruntime into ``generator.int8.onnx`` (symmetric int8, which both
  onnxruntime and TensorRT's explicit-quantization parser run), with the
  precision-sensitive parts of the graph kept in float.
* ``calibration.report``: INT8 against fp32 on held-out faces (PSNR, max
  error, lip colour difference) and generator latency, measured in one run.
* ``calibration.kernel_profile``: kernel time per operator class of both
  graphs (``report --profile``) and the most INT8 can gain on this CPU.
* ``calibration.cli``: ``ipmcam calibrate build-set | quantize | report``.

Nothing here imports torch; onnxruntime and mediapipe are imported by the
functions that need them.
"""
