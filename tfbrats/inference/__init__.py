"""Whole-patient prediction: overlapping sliding windows over a cropped, normalised volume.

`sliding_window` is numpy only (no TensorFlow import), so it serves any backend and any callable.
"""

from tfbrats.inference.sliding_window import BLEND_MODES, sliding_window

__all__ = ["BLEND_MODES", "sliding_window"]
