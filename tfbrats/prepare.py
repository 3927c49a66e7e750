"""Preprocess a dataset (any layout `tfbrats.data.find_cases` reads) into a cache that `make_dataset` reads.

Usage:
    python -m tfbrats.prepare --data_dir=data/MICCAI_BraTS2020_TrainingData --cache_dir=cache/brats2020

Each case becomes a memory-mappable ``.npy`` array plus a JSON of metadata (see
`tfbrats.data.cache`); the work runs in parallel with a progress bar, a killed run leaves no
half-written case, a rerun skips the finished ones, and a cache made with other settings is
refused.
"""

from __future__ import annotations

from absl import app, flags, logging

from tfbrats.data import CaseError
from tfbrats.data.cache import list_cached_cases, prepare_cache
from tfbrats.data.cases import find_cases

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir", None, "Dataset root (BraTS 2018-2023+, Decathlon, nnU-Net raw), case folder or CSV manifest."
)
flags.DEFINE_string("cache_dir", None, "Output folder for the preprocessed cases.")
flags.DEFINE_integer("input_channels", 3, "3 (FLAIR, T1c, T2) or 4 (plus T1).")
flags.DEFINE_integer("workers", None, "Worker processes (default: the CPU count).")
flags.mark_flags_as_required(["data_dir", "cache_dir"])


def main(argv: list[str]) -> int:
    """Finds the cases under --data_dir and writes the missing ones to --cache_dir."""
    del argv
    try:
        index = find_cases(FLAGS.data_dir)
        logging.info("found %d cases in layout %s under %s", len(index.cases), index.layout, FLAGS.data_dir)
        written = prepare_cache(index.cases, FLAGS.cache_dir, FLAGS.input_channels, FLAGS.workers)
    except (CaseError, OSError, ValueError) as error:
        logging.error("%s", error)
        return 1
    total = len(list_cached_cases(FLAGS.cache_dir))
    print(f"wrote {len(written)} cases, {total} in {FLAGS.cache_dir} ({index.layout} layout)")
    return 0


if __name__ == "__main__":
    app.run(main)
