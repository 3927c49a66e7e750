"""Export a trained tfbrats model for TensorFlow Serving (SavedModel), an ONNX runtime or OpenVINO.

    python tools/export.py --model=runs/3d --output=saved_models/albunet3d --version=1
    python tools/export.py --model=runs/3d --output=onnx_models/albunet3d --version=1 --format=onnx
    python tools/export.py --model=runs/3d --output=openvino_models/albunet3d --version=1 --format=openvino

--model is a training run folder (best.keras, else final.keras) or a .keras file; the model's
segmentation contract (target, window, the post-processing chosen by `python -m tfbrats.tune`)
goes into the export, and --patch_size/--steps/--batch_size override its window. The SavedModel
in <output>/<version>/ has two signatures: `serving_default` (patches -> probabilities) and
`segment` (one preprocessed volume of any size -> labels, the window, the target's labels and
the post-processing run in the graph as far as TensorFlow can, the rest named for the client),
so a served model segments as `python -m tfbrats.predict` does; classes and regions models alike.
`assets.extra/tfbrats.json` records the contract and the model. --format=onnx writes
<output>/<version>/model.onnx (patches -> probabilities, the contract in its metadata; needs the
`onnx` extra: tf2onnx, onnx). --format=openvino writes <output>/<version>/model.xml and model.bin,
OpenVINO's IR of patches -> probabilities for any window, the contract in its runtime information
(needs the `onnx` and `openvino` extras); `tfbrats.serving.openvino.OpenVinoSegmenter` segments
with it. An existing version is never overwritten: choose a new --version.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbrats.cli import parse_size  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="training run folder or .keras file")
    parser.add_argument("--output", required=True, type=Path, help="model base folder, e.g. saved_models/albunet3d")
    parser.add_argument("--version", required=True, type=int, help="version number: the folder <output>/<version>")
    parser.add_argument("--format", choices=("saved_model", "onnx", "openvino"), default="saved_model")
    parser.add_argument("--patch_size", type=parse_size, help="window D,H,W (default: the contract's)")
    parser.add_argument("--steps", type=parse_size, help="window steps D,H,W of `segment` (default: the contract's)")
    parser.add_argument("--batch_size", type=int, help="windows per call inside `segment` (default: the contract's)")
    parser.add_argument("--opset", type=int, help="ONNX opset (--format=onnx, openvino; default: export.ONNX_OPSET)")
    args = parser.parse_args(argv)

    target = args.output / str(args.version)
    if target.exists():
        print(f"error: {target} already exists; versions are never overwritten: export with a new --version",
              file=sys.stderr)
        return 1
    if args.format != "saved_model" and (args.steps or args.batch_size is not None):
        parser.error(f"--steps and --batch_size belong to the SavedModel's `segment` signature, not to "
                     f"--format={args.format}")

    from tfbrats.inference.model import load_model, override_contract
    from tfbrats.serving import export

    loaded = load_model(args.model, "float32")  # float32 weights; OpenVINO chooses its own compute precision
    contract = override_contract(loaded.contract, patch_size=args.patch_size, steps=args.steps,
                                 batch_size=args.batch_size)
    extra = {"source": str(loaded.path), "source_sha256": loaded.fingerprint, "run_config": loaded.run_config}
    try:
        if args.format == "openvino":
            written = export.export_openvino(loaded.model, args.output, args.version, contract,
                                             opset=args.opset or export.ONNX_OPSET, extra_metadata=extra)
        elif args.format == "onnx":
            written = export.export_onnx(loaded.model, args.output, args.version, contract,
                                         opset=args.opset or export.ONNX_OPSET, extra_metadata=extra)
        else:
            written = export.export_saved_model(loaded.model, args.output, args.version, contract,
                                                extra_metadata=extra)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {written} ({args.format}) from {loaded.path}: target {contract.target.name}, window "
          f"{contract.window.patch_size} steps {contract.window.steps}, post-processing "
          f"{contract.postprocessing.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
