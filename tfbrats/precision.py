"""The one place that switches Keras' compute precision, and always switches it back.

Keras keeps a process-wide dtype policy that layers read when they are built. `compute_precision`
sets it for the models built inside a ``with`` block and restores the previous policy afterwards,
so training, prediction and the benchmarks never leave a changed policy behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# float32; bfloat16 (fast on CPUs with AVX512_BF16/AMX and on A100/H100 GPUs, no loss scaling
# needed); float16 (fast on V100/T4-class GPUs, needs loss scaling when training).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def compute_precision(policy: str = "float32") -> Iterator[None]:
    """Builds models inside the block with the Keras dtype policy `policy`, then restores the old one.

    Args:
        policy: One of `PRECISIONS`.

    Example:
        >>> import keras
        >>> with compute_precision("mixed_bfloat16"):
        ...     keras.layers.Dense(2).dtype_policy.compute_dtype
        'bfloat16'
        >>> keras.mixed_precision.global_policy().name
        'float32'
    """
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {policy!r}")
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
