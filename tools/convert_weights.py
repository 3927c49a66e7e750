"""Convert torchvision-format ResNet34 ImageNet weights to tfbrats' Keras encoder weights.

    python tools/convert_weights.py --input=resnet34-b627a593.pth --output=encoder.weights.h5
    python tools/convert_weights.py --input=model.safetensors --output=encoder.weights.h5

The output loads without torch: `AlbuNet3D.from_encoder_weights("encoder.weights.h5")`, or
`tfbrats.models.load_encoder_weights(model, "encoder.weights.h5")` into a model already built.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="torchvision ResNet34 weights (.pth or .safetensors)")
    parser.add_argument("--output", required=True, help="Keras weights file to write (*.weights.h5)")
    args = parser.parse_args(argv)

    from tfbrats.models import resnet34_encoder
    from tfbrats.models.weights import save_encoder_weights, torchvision_encoder_weights

    converted = torchvision_encoder_weights(args.input, resnet34_encoder())
    save_encoder_weights(converted, args.output)
    count = sum(w.size for weights in converted.values() for w in weights)
    print(f"wrote {args.output}: {len(converted)} encoder layers, {count:,} numbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
