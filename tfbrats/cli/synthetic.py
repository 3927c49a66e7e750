"""Write synthetic brain tumor cases in any dataset layout tfbrats reads (`tfbrats.data.synthetic`).

Usage:
    tfbrats-synthetic --out=demo_data --cases=20 --shape=96,96,64 --seed=0
    tfbrats-synthetic --out=Task01_BrainTumour --cases=8 --layout=decathlon --test_cases=2

The same seed writes the same cases (voxels and labels) in every layout; every fourth case has no
enhancing tumor, and in the ``brats2025`` layout the odd cases are post-treatment.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfbrats.cli import UsageError, run_command
from tfbrats.data.synthetic import LAYOUTS, write_synthetic_dataset

FLAGS = flags.FlagValues()
_OUT = flags.DEFINE_string("out", None, "Output dataset folder.", flag_values=FLAGS)
_CASES = flags.DEFINE_integer("cases", 8, "Number of cases.", lower_bound=1, flag_values=FLAGS)
_SHAPE = flags.DEFINE_list("shape", ["240", "240", "155"], "Volume shape X,Y,Z in nibabel order (default: BraTS' "
                           "240,240,155).", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same cases.", flag_values=FLAGS)
_LAYOUT = flags.DEFINE_enum("layout", "brats2020", list(LAYOUTS), "Dataset layout.", flag_values=FLAGS)
_TEST_CASES = flags.DEFINE_integer("test_cases", 0, "How many of the cases (the last ones) have no labels.",
                                   lower_bound=0, flag_values=FLAGS)
flags.mark_flag_as_required("out", flag_values=FLAGS)


def _shape() -> tuple[int, int, int]:
    """--shape as three positive integers."""
    try:
        shape = tuple(int(v) for v in _SHAPE.value)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"--shape: expected three positive integers X,Y,Z; got {','.join(_SHAPE.value)!r}")
    return shape


def _write() -> None:
    """Writes the cases the flags describe."""
    shape = _shape()
    try:
        written = write_synthetic_dataset(_OUT.value, _CASES.value, shape, _SEED.value, _LAYOUT.value,
                                          _TEST_CASES.value)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {len(written)} synthetic cases of shape {shape} to {_OUT.value} ({_LAYOUT.value} layout)")


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbrats-synthetic``: writes the cases of the flags in `argv` (default: the command line); the exit status.

    Example:
        >>> import contextlib, sys, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> main([f"--out={tmp.name}", "--cases=2", "--shape=32,32,16"])  # doctest: +ELLIPSIS
        wrote 2 synthetic cases of shape (32, 32, 16) to ... (brats2020 layout)
        0
        >>> with contextlib.redirect_stderr(sys.stdout):
        ...     main([f"--out={tmp.name}", "--shape=32,32"])
        error: --shape: expected three positive integers X,Y,Z; got '32,32'
        Pass --help to see the flags of tfbrats-synthetic.
        2
        >>> tmp.cleanup()
    """
    return run_command(FLAGS, _write, argv, doc=__doc__, program="tfbrats-synthetic")
