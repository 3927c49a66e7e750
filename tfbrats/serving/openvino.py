"""Segmentation with an OpenVINO export: OpenVINO runs the network, tfbrats runs the contract.

The IR maps windows to probabilities; the window, the target's labels and the post-processing come
from the contract stored in the IR and run through the same functions as `python -m
tfbrats.predict` (`window_probabilities`, `finish_segmentation`), so the labels are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfbrats.contract import SegmentationContract, finish_segmentation
from tfbrats.inference.predict import window_probabilities
from tfbrats.serving.signatures import IMAGE_INPUT, OPENVINO_FILE, PROBABILITIES_OUTPUT

# tfbrats' precision names -> OpenVINO's inference precision hint (weights stay float32 in the IR).
INFERENCE_PRECISIONS = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}
# What a CPU must report among OpenVINO's OPTIMIZATION_CAPABILITIES to compute in that precision.
_CAPABILITIES = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}


class OpenVinoSegmenter:
    """An exported `model.xml` with its contract, segmenting preprocessed images.

    The IR accepts any window; each input shape is compiled once, with that shape fixed (OpenVINO's
    CPU kernels are faster on static shapes), and kept for the next call.

    Args:
        version_dir: The export's version folder (holding `model.xml` and `model.bin`).
        precision: "float32", or "mixed_bfloat16" / "mixed_float16" where the device computes in
            them (OpenVINO's inference precision hint); None: the contract window's precision.
        device: The OpenVINO device ("CPU").
        contract: Another contract to segment by (a different window, for instance); by default
            the one stored in the export.

    Example: an export of a one-layer stand-in (`tfbrats.serving.export.export_openvino`; a trained
    model's export is used the same way), segmenting a preprocessed image (`load_case(case).image`).

        >>> import tempfile
        >>> import keras
        >>> from tfbrats.contract import Window
        >>> from tfbrats.serving.export import export_openvino
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> segmenter = OpenVinoSegmenter(export_openvino(model, Path(tmp.name) / "albunet3d", 1, contract))
        >>> labels = segmenter.segment(np.ones((20, 40, 40, 3), np.float32))
        >>> labels.shape, labels.dtype.name, set(np.unique(labels)) <= {0, 1, 2, 3}
        ((20, 40, 40), 'uint8', True)
        >>> tmp.cleanup()
    """

    def __init__(self, version_dir: str | Path, precision: str | None = None, device: str = "CPU",
                 contract: SegmentationContract | None = None):
        import openvino

        from tfbrats.serving.export import read_metadata

        path = Path(version_dir) / OPENVINO_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; export with tools/export.py --format=openvino")
        if precision is not None and precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(INFERENCE_PRECISIONS)}; got {precision!r}")
        self.contract = contract or SegmentationContract.from_json(read_metadata(version_dir)["contract"])
        precision = precision or self.contract.window.precision
        self.core = openvino.Core()
        hint = INFERENCE_PRECISIONS[precision]
        capabilities = self.core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        if _CAPABILITIES[hint] not in capabilities:
            raise ValueError(f"OpenVINO's {device} cannot compute in {precision} (it offers {capabilities})")
        self.network = self.core.read_model(str(path))
        self.device, self.config = device, {"INFERENCE_PRECISION_HINT": hint}
        self._compiled: dict[tuple[int, ...], Any] = {}

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The network's probabilities for a batch of windows (B, d, h, w, C)."""
        windows = np.ascontiguousarray(windows, np.float32)
        compiled = self._compiled.get(windows.shape)
        if compiled is None:
            network = self.network.clone()
            network.reshape({IMAGE_INPUT: list(windows.shape)})
            compiled = self._compiled[windows.shape] = self.core.compile_model(network, self.device, self.config)
        return np.asarray(compiled(windows)[PROBABILITIES_OUTPUT], np.float32)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Internal labels (D, H, W) of a preprocessed image (D, H, W, C), as the contract says."""
        return finish_segmentation(window_probabilities(image, self.probabilities, self.contract), image,
                                   self.contract)
