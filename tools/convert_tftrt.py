"""Convert an exported tfbrats SavedModel with TF-TRT (TensorRT) for serving on an NVIDIA GPU.

    python tools/convert_tftrt.py --input=saved_models/albunet3d/1 \\
        --output=saved_models/albunet3d_trt/1 --precision=FP16

TF-TRT is part of TensorFlow's pip builds up to 2.17 only: run this tool in an environment with
`pip install 'tfbrats[tftrt]'` (TensorFlow 2.16/2.17). With TensorFlow 2.18 or newer it says so
and exits with status 2; the accelerated route there is ONNX (`tools/export.py --format=onnx`, then
onnxruntime's TensorRT execution provider or TensorRT's `trtexec`).

Needs, with TensorFlow 2.16.2's pip build (built against CUDA 12.3, cuDNN 8 and TensorRT 8.6.1;
`tf.sysconfig.get_build_info()` prints the first two):
- an NVIDIA GPU that TensorFlow sees: a driver for CUDA 12.3 and the CUDA libraries
  (`pip install tensorflow[and-cuda]==2.16.2`); the build covers compute capability 5.0 to 9.0,
  and FP16 is fast from 7.0 (tensor cores);
- TensorRT 8.6 on the library path: `libnvinfer.so.8` and `libnvinfer_plugin.so.8` from NVIDIA's
  TensorRT 8.6.1 packages (tar, deb/rpm, or the `tensorrt==8.6.1` wheel), with their folder on
  LD_LIBRARY_PATH.
Without them the tool stops at once, before it touches TF-TRT (which, measured with TF 2.16.2's
pip build, aborts the whole process when asked for a TensorRT version it cannot load), prints what
is missing, writes nothing and exits with status 2.

Only `serving_default` (patches -> probabilities) is converted: TF-TRT saves one signature per
model, and the `segment` signature's model calls sit inside a while loop. Serve the result like
the original and run the window in the client: `tools/serving_client.py --signature=serving_default`.
TensorRT engines are built for the export's window (`assets.extra/tfbrats.json`) at batch 1 and
at the export's batch size, and saved, so they belong to this GPU model and TensorRT version.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TENSORRT_LIBRARY = "libnvinfer.so.8"
LAST_TFTRT_TENSORFLOW = (2, 17)
PRECISIONS = ("FP32", "FP16")
EXIT_MISSING = 2


def tensorflow_without_tftrt() -> str | None:
    """Why the installed TensorFlow has no TF-TRT (2.18 and newer), or None; reads only its metadata."""
    version = importlib.metadata.version("tensorflow")
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) <= LAST_TFTRT_TENSORFLOW:
        return None
    return (f"TensorFlow {version}: TF-TRT was removed after TensorFlow 2.17. Convert in an environment with "
            "TensorFlow 2.16 or 2.17 (pip install 'tfbrats[tftrt]'), or take the ONNX route: "
            "tools/export.py --format=onnx, then onnxruntime's TensorRT execution provider or trtexec")


def missing_requirements() -> list[str]:
    """What TF-TRT needs and this machine lacks; empty when TF-TRT, a GPU and TensorRT 8 are present.

    Checks TensorFlow's version by its metadata and the TensorRT library with ctypes first, then
    imports TensorFlow only to list GPUs: nothing here asks TF-TRT anything.
    """
    no_tftrt = tensorflow_without_tftrt()
    if no_tftrt:
        return [no_tftrt]
    missing = []
    try:
        ctypes.CDLL(TENSORRT_LIBRARY)
    except OSError as error:
        missing.append(f"TensorRT 8: {TENSORRT_LIBRARY} cannot be loaded ({error}); install TensorRT 8.6.1 "
                       "and put its lib folder on LD_LIBRARY_PATH")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        build = tf.sysconfig.get_build_info()
        missing.append(f"GPU: TensorFlow {tf.__version__} sees none (built for CUDA {build.get('cuda_version')}, "
                       f"cuDNN {build.get('cudnn_version')}); install the NVIDIA driver and tensorflow[and-cuda]")
    return missing


def convert(input_dir: Path, output_dir: Path, precision: str) -> Path:
    """Converts `serving_default`, builds engines for the export's window, writes `output_dir` atomically."""
    import numpy as np
    import tensorflow as tf

    from tfbrats.files import atomic_folder
    from tfbrats.serving.export import read_metadata
    from tfbrats.serving.signatures import IMAGE_INPUT, METADATA_FILE, SERVING_DEFAULT

    metadata = read_metadata(input_dir)
    window = metadata["contract"]["window"]
    shape = tuple(window["patch_size"]) + (metadata["input_channels"],)

    def engine_inputs():
        for batch in sorted({1, window["batch_size"]}):
            yield {IMAGE_INPUT: np.zeros((batch,) + shape, np.float32)}

    converter = tf.experimental.tensorrt.Converter(
        input_saved_model_dir=str(input_dir),
        input_saved_model_signature_key=SERVING_DEFAULT,
        precision_mode=precision,
        use_dynamic_shape=True,
        dynamic_shape_profile_strategy="Optimal",
    )
    converter.convert()
    converter.build(input_fn=engine_inputs)
    converted = dict(metadata)
    converted["format"] = "saved_model_tftrt"
    converted["signatures"] = {SERVING_DEFAULT: metadata["signatures"][SERVING_DEFAULT]}
    converted["tensorrt"] = {"precision": precision, "source": str(input_dir),
                             "engine_batch_sizes": sorted({1, window["batch_size"]})}

    with atomic_folder(output_dir) as folder:
        converter.save(str(folder))
        (folder / METADATA_FILE).parent.mkdir(exist_ok=True)
        (folder / METADATA_FILE).write_text(json.dumps(converted, indent=2) + "\n")
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="exported version folder (tools/export.py)")
    parser.add_argument("--output", required=True, type=Path, help="new version folder for the converted model")
    parser.add_argument("--precision", choices=PRECISIONS, default="FP16", help="TensorRT precision")
    args = parser.parse_args(argv)

    missing = missing_requirements()
    if missing:
        print("convert_tftrt: TF-TRT cannot run on this machine; nothing was written. Missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return EXIT_MISSING
    if not (args.input / "saved_model.pb").is_file():
        parser.error(f"{args.input} is not a SavedModel version folder (no saved_model.pb)")
    if args.output.exists():
        parser.error(f"{args.output} already exists; choose a new version folder")
    written = convert(args.input, args.output, args.precision)
    print(f"wrote {written}: serving_default converted with TF-TRT ({args.precision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
