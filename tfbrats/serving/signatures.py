"""Names shared by the exporter and the clients (no TensorFlow import).

A client needs only these names to talk to a served tfbrats model:

- `serving_default`: input `image` float32 `(B, D, H, W, C)` -> output `probabilities` float32
  `(B, D, H, W, K)`;
- `segment`: input `volume` float32 `(D, H, W, C)` -> outputs `labels` int32 `(D, H, W)` and
  `client_postprocessing` int32 `(4,)` (the contract's steps left to the client).
"""

from __future__ import annotations

from pathlib import Path

SERVING_DEFAULT = "serving_default"
SEGMENT = "segment"
IMAGE_INPUT = "image"
VOLUME_INPUT = "volume"
PROBABILITIES_OUTPUT = "probabilities"
LABELS_OUTPUT = "labels"
CLIENT_POSTPROCESSING_OUTPUT = "client_postprocessing"

# Written beside the SavedModel in the folder the SavedModel format leaves to libraries.
METADATA_FILE = Path("assets.extra") / "tfbrats.json"
ONNX_FILE = "model.onnx"
ONNX_METADATA_KEY = "tfbrats"
# OpenVINO IR: the graph (model.xml, which also keeps the description under ONNX_METADATA_KEY) and its weights.
OPENVINO_FILE = "model.xml"
