"""BraTS conventions every stage shares: modality keys, channel order, storage orientation, size multiple.

Each is defined here once and imported by every module that needs it (reading cases, the
clinical preparation, the models, training's checks, the window, the contract); labels and
regions have their own owner, `tfbrats.labels`.

- `MODALITIES`: the modality keys of a case (`tfbrats.data.Case.images`), in BraTS 2020's order;
  BraTS 2023+ file names (``t1n, t1c, t2w, t2f``) and ``dataset.json`` channel names are mapped
  to these.
- `channels_for(input_channels)`: the model's input channels in order, the paper's R = FLAIR,
  G = T1c, B = T2, plus T1 as a 4th channel; `DEFAULT_CHANNELS` is the 3-channel order and
  `REQUIRED_MODALITIES` the modalities it needs, in `MODALITIES`' order.
- `STORAGE_AXCODES`: BraTS' voxel orientation, nibabel's axis codes L, P, S (the first index runs
  to the patient's left, the second to posterior, the third, the axial slice axis, to superior);
  `STORAGE_ORIENTATION` is the same as the three-letter code DICOM and SimpleITK use ("LPS", the
  identity direction in their LPS world).
- `SIZE_MULTIPLE`: H and W of a network input are multiples of 32, as the encoder halves them
  five times; D is never reduced.

Example:
    >>> channels_for(4), REQUIRED_MODALITIES, STORAGE_ORIENTATION
    (('flair', 't1ce', 't2', 't1'), ('t1ce', 't2', 'flair'), 'LPS')
"""

from __future__ import annotations

MODALITIES = ("t1", "t1ce", "t2", "flair")
_CHANNELS = ("flair", "t1ce", "t2", "t1")
STORAGE_AXCODES = ("L", "P", "S")
STORAGE_ORIENTATION = "".join(STORAGE_AXCODES)
SIZE_MULTIPLE = 32


def channels_for(input_channels: int) -> tuple[str, ...]:
    """The modality keys, in channel order, for 3 or 4 input channels.

    Args:
        input_channels: 3 (the paper's FLAIR, T1c, T2) or 4 (T1 appended).

    Raises:
        ValueError: Any other number of channels.

    Example:
        >>> channels_for(3)
        ('flair', 't1ce', 't2')
    """
    if input_channels in (3, 4):
        return _CHANNELS[:input_channels]
    raise ValueError(f"input_channels must be 3 (FLAIR, T1c, T2) or 4 (plus T1); got {input_channels}")


DEFAULT_CHANNELS = channels_for(3)
REQUIRED_MODALITIES = tuple(key for key in MODALITIES if key in DEFAULT_CHANNELS)
