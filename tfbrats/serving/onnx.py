"""Segmentation with an ONNX export: onnxruntime runs the network, tfbrats runs the contract.

The ONNX model maps windows to probabilities; the window, the target's labels and the
post-processing come from the contract stored in the model's metadata and run through the same
functions as `python -m tfbrats.predict`, so the labels are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfbrats.contract import SegmentationContract, finish_segmentation
from tfbrats.inference.predict import window_probabilities
from tfbrats.serving.signatures import IMAGE_INPUT, ONNX_FILE, PROBABILITIES_OUTPUT


class OnnxSegmenter:
    """An exported `model.onnx` with its contract, segmenting preprocessed images.

    Args:
        version_dir: The export's version folder (holding `model.onnx`).
        providers: onnxruntime execution providers (default: the CPU).
        contract: Another contract to segment by (another window needs an export made with
            `any_window`); by default the one stored in the export.

    Example: an export of a one-layer stand-in (`tfbrats.serving.export.export_onnx`; a trained
    model's export is used the same way), segmenting a preprocessed image (`load_case(case).image`).

        >>> import tempfile
        >>> import keras
        >>> from tfbrats.contract import Window
        >>> from tfbrats.serving.export import export_onnx
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((None, None, None, 3)), keras.layers.Conv3D(4, 1)])
        >>> contract = SegmentationContract(window=Window.for_patch((16, 32, 32)))
        >>> segmenter = OnnxSegmenter(export_onnx(model, Path(tmp.name) / "albunet3d", 1, contract))
        >>> segmenter.contract == contract
        True
        >>> labels = segmenter.segment(np.ones((20, 40, 40, 3), np.float32))
        >>> labels.shape, labels.dtype.name, set(np.unique(labels)) <= {0, 1, 2, 3}
        ((20, 40, 40), 'uint8', True)
        >>> tmp.cleanup()
    """

    def __init__(self, version_dir: str | Path, providers: list[str] | None = None,
                 contract: SegmentationContract | None = None):
        import onnxruntime

        from tfbrats.serving.export import read_metadata

        path = Path(version_dir) / ONNX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; export with tools/export.py --format=onnx")
        self.contract = contract or SegmentationContract.from_json(read_metadata(version_dir)["contract"])
        self.session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """The network's probabilities for a batch of windows (B, d, h, w, C)."""
        return self.session.run([PROBABILITIES_OUTPUT], {IMAGE_INPUT: np.asarray(windows, np.float32)})[0]

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Internal labels (D, H, W) of a preprocessed image (D, H, W, C), as the contract says."""
        return finish_segmentation(window_probabilities(image, self.probabilities, self.contract), image,
                                   self.contract)
