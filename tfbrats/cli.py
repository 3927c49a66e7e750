"""Small helpers shared by the command-line entry points (`python -m tfbrats.*` and tools/)."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int, int]:
    """Parses "D,H,W" into three positive integers; usable as an argparse `type`.

    Example:
        >>> parse_size("24,128,128")
        (24, 128, 128)
    """
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers D,H,W; got {text!r}")
    return values
