"""The makeup regions by name: mask channels and the face-mesh landmarks that outline them.

Plain data with no imports, so code that only needs the channel numbers (the
network graph, which may be built on a machine without OpenCV) does not pull
in the mask drawing.
"""
from __future__ import annotations

MASK_CHANNELS: tuple[str, ...] = ("lips", "eye_shadow", "skin")
LIPS, EYE_SHADOW, SKIN = range(3)

LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
EYE_A = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
EYE_B = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
BROW_A = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]
BROW_B = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
