"""Puts ``tools/`` on the import path, as running ``python tools/benchmark.py`` does, so tests import its modules."""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
