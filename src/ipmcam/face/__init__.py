"""Face geometry: landmark tracking and smoothing, alignment to the canonical crop, region masks, reference photos.

The bottom layer: it imports nothing of ours but ``ipmcam.errors``, so the
model, the engines and the tools can all use it without the live application.
"""
