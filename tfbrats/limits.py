"""The largest image tfbrats reads: one limit for every reader (NIfTI headers, DICOM series).

A header states how many voxels follow; a damaged or hostile one can claim gigabytes in a
kilobyte file. Every reader checks the declared count against this limit before it allocates
anything. Raise it with the environment variable ``TFBRATS_MAX_VOXELS``.
"""

from __future__ import annotations

import os

MAX_VOXELS_VARIABLE = "TFBRATS_MAX_VOXELS"
# 2**28 voxels: 1 GiB as float32, e.g. 1024 x 512 x 512; BraTS' 240 x 240 x 155 is 8.9 million.
DEFAULT_MAX_VOXELS = 2**28


def max_voxels() -> int:
    """The most voxels one image may declare: ``TFBRATS_MAX_VOXELS`` if set, else `DEFAULT_MAX_VOXELS`.

    Raises:
        ValueError: The variable is set but not a positive whole number.

    Example:
        >>> max_voxels() == int(os.environ.get("TFBRATS_MAX_VOXELS", DEFAULT_MAX_VOXELS))
        True
    """
    value = os.environ.get(MAX_VOXELS_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_VOXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_VOXELS_VARIABLE}={value!r} is not a positive whole number of voxels per image; "
                         f"set it like {MAX_VOXELS_VARIABLE}={2 * DEFAULT_MAX_VOXELS} or unset it "
                         f"(default {DEFAULT_MAX_VOXELS})")
    return limit
