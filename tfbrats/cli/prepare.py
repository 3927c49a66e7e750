"""Preprocess a dataset (any layout `tfbrats.data.find_cases` reads) into a cache that `make_dataset` reads.

Usage:
    tfbrats-prepare --data_dir=data/MICCAI_BraTS2020_TrainingData --cache_dir=cache/brats2020

Each case becomes a memory-mappable ``.npy`` array plus a JSON of metadata (see
`tfbrats.data.cache`); the work runs in parallel with a progress bar, a killed run leaves no
half-written case, a rerun skips the finished ones, and a cache made with other settings is
refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags, logging

from tfbrats.cli import run_command

FLAGS = flags.FlagValues()
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Dataset root (BraTS 2018-2023+, Decathlon, nnU-Net raw), case folder or CSV manifest.",
    flag_values=FLAGS)
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Output folder for the preprocessed cases.", flag_values=FLAGS)
_INPUT_CHANNELS = flags.DEFINE_integer("input_channels", 3, "3 (FLAIR, T1c, T2) or 4 (plus T1).", flag_values=FLAGS)
_WORKERS = flags.DEFINE_integer("workers", None, "Worker processes (default: the CPU count).", flag_values=FLAGS)
flags.mark_flags_as_required(["data_dir", "cache_dir"], flag_values=FLAGS)


def _prepare() -> int:
    """Finds the cases under --data_dir and writes the missing ones to --cache_dir; 1 on a bad case or folder."""
    from tfbrats.data import CaseError
    from tfbrats.data.cache import list_cached_cases, prepare_cache
    from tfbrats.data.cases import find_cases

    try:
        index = find_cases(_DATA_DIR.value)
        logging.info("found %d cases in layout %s under %s", len(index.cases), index.layout, _DATA_DIR.value)
        written = prepare_cache(index.cases, _CACHE_DIR.value, _INPUT_CHANNELS.value, _WORKERS.value)
    except (CaseError, OSError, ValueError) as error:
        logging.error("%s", error)
        return 1
    total = len(list_cached_cases(_CACHE_DIR.value))
    print(f"wrote {len(written)} cases, {total} in {_CACHE_DIR.value} ({index.layout} layout)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-prepare``: fills the cache with the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(f"{tmp.name}/data", cases=2, shape=(32, 32, 16))
        >>> main([f"--data_dir={tmp.name}/data", f"--cache_dir={tmp.name}/cache", "--workers=1"])  # doctest: +ELLIPSIS
        wrote 2 cases, 2 in .../cache (brats2020 layout)
        0
        >>> tmp.cleanup()
    """
    return run_command(FLAGS, _prepare, argv, doc=__doc__, program="tfbrats-prepare")
