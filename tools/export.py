"""Export a trained tfbrats model for TensorFlow Serving (SavedModel) or an ONNX runtime.

    python tools/export.py --model=runs/3d --output=saved_models/albunet3d --version=1
    python tools/export.py --model=runs/3d --output=onnx_models/albunet3d --version=1 --format=onnx

--model is a training run folder (best.keras, else final.keras, and config.json) or a .keras file.
The SavedModel in <output>/<version>/ has two signatures: `serving_default` (patches -> class
probabilities) and `segment` (one preprocessed volume of any size -> int32 labels, the sliding
window running in the graph with the training patch and steps 24,32,32 clipped to it, as
`python -m tfbrats.predict`); `assets.extra/tfbrats.json` records the window and the model.
--format=onnx writes <output>/<version>/model.onnx (patches -> probabilities; needs the `onnx`
extra: tf2onnx, onnx). An existing version is never overwritten: choose a new --version.
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
    parser.add_argument("--format", choices=("saved_model", "onnx"), default="saved_model")
    parser.add_argument("--patch_size", type=parse_size, help="window D,H,W (default: config.json's patch)")
    parser.add_argument("--steps", type=parse_size, help="window steps D,H,W of `segment` (default: 24,32,32 clipped)")
    parser.add_argument("--batch_size", type=int, help="windows per model call inside `segment` (default: as predict)")
    parser.add_argument("--opset", type=int, help="ONNX opset (--format=onnx; default: tfbrats.serving.export's)")
    args = parser.parse_args(argv)

    target = args.output / str(args.version)
    if target.exists():
        print(f"error: {target} already exists; versions are never overwritten: export with a new --version",
              file=sys.stderr)
        return 1
    if args.format == "onnx" and (args.steps or args.batch_size is not None):
        parser.error("--steps and --batch_size belong to the SavedModel's `segment` signature, not to --format=onnx")

    from tfbrats.inference.predict import load_model
    from tfbrats.serving import export
    from tfbrats.serving.signatures import DEFAULT_BATCH_SIZE

    loaded = load_model(args.model)
    if loaded.run_config.get("target", "classes") != "classes":
        print(f"error: {loaded.path} was trained with --target={loaded.run_config['target']} (sigmoid WT/TC/ET "
              "outputs); the serving signatures are written for --target=classes models only", file=sys.stderr)
        return 1
    patch = args.patch_size or loaded.patch_size
    extra = {"source": str(loaded.path), "run_config": loaded.run_config}
    if args.format == "onnx":
        written = export.export_onnx(loaded.model, args.output, args.version, patch,
                                     opset=args.opset or export.ONNX_OPSET, extra_metadata=extra)
    else:
        batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
        written = export.export_saved_model(loaded.model, args.output, args.version, patch, steps=args.steps,
                                            batch_size=batch_size, extra_metadata=extra)
    window = export.read_metadata(written)["window"]
    print(f"wrote {written} ({args.format}) from {loaded.path}; window {window}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
