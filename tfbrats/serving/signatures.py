"""Names and window defaults shared by the exporter and the clients (no TensorFlow import).

A client needs only these names to talk to a served tfbrats model:

- `serving_default`: input `image` float32 `(B, D, H, W, C)` -> output `probabilities` float32
  `(B, D, H, W, K)`;
- `segment`: input `volume` float32 `(D, H, W, C)` -> output `labels` int32 `(D, H, W)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tfbrats.inference.predict import DEFAULT_PATCH_3D, DEFAULT_STEPS, WindowSettings

SERVING_DEFAULT = "serving_default"
SEGMENT = "segment"
IMAGE_INPUT = "image"
VOLUME_INPUT = "volume"
PROBABILITIES_OUTPUT = "probabilities"
LABELS_OUTPUT = "labels"

# Written beside the SavedModel in the folder the SavedModel format leaves to libraries.
METADATA_FILE = Path("assets.extra") / "tfbrats.json"
ONNX_FILE = "model.onnx"
ONNX_METADATA_KEY = "tfbrats"

# The window defaults of `python -m tfbrats.predict`, so that a served model segments like it.
DEFAULT_PATCH_SIZE = DEFAULT_PATCH_3D
DEFAULT_BATCH_SIZE = WindowSettings().batch_size


def default_steps(patch_size: Sequence[int]) -> tuple[int, int, int]:
    """`tfbrats.predict`'s steps (the paper's 24, 32, 32), clipped to the window size.

    Example:
        >>> default_steps((16, 96, 96))
        (16, 32, 32)
    """
    return tuple(min(int(s), int(p)) for s, p in zip(DEFAULT_STEPS, patch_size))
