"""Whole-patient prediction: a model with its segmentation contract, sliding windows, NIfTI out.

`sliding_window` is numpy only (no TensorFlow import), so it serves any backend and any callable.
`load_model` reads a `.keras` file or a run folder with its `tfbrats.contract.SegmentationContract`;
`segment` and `predict_cases` apply it (the same code the serving client uses).
"""

from tfbrats.inference.sliding_window import BLEND_MODES, sliding_window

__all__ = ["BLEND_MODES", "sliding_window"]
