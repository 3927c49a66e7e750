"""Benchmarks that print their figures as JSON: ``python tools/benchmark.py <sub-command> ...``.

The sub-commands live in ``tools/benchmarks/``, one module each (``forward`` also holds
``peak``), over the timing, machine and backend facts of ``tools/benchmarks/common.py``. This file
is the entry: `SUBCOMMANDS` maps each name to its help line, the function adding its arguments
and the function running it; the result is printed with the machine it ran on. Python puts this
file's folder, ``tools/``, first on the import path, so ``benchmarks`` is that package.

Example:
    python tools/benchmark.py data --patch=16,64,64 --batch=2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

# tools/benchmarks/: loads no TensorFlow
from benchmarks import data, forward, modes, onnx_cpu, predict, publish, reference, train_step, windows
from benchmarks.common import machine_facts

import tfbrats  # noqa: F401  (sets TensorFlow's CPU defaults before TensorFlow loads)

Runner = Callable[[argparse.Namespace], dict[str, Any]]

SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {
    "data": (data.HELP, data.add_arguments, data.run),
    "peak": (forward.PEAK_HELP, forward.add_arguments, forward.run_peak),
    "forward": (forward.HELP, forward.add_arguments, forward.run),
    "train_step": (train_step.HELP, train_step.add_arguments, train_step.run),
    "predict": (predict.HELP, predict.add_arguments, predict.run),
    "windows": (windows.HELP, windows.add_arguments, windows.run),
    "onnx": (onnx_cpu.HELP, onnx_cpu.add_arguments, onnx_cpu.run),
    "modes": (modes.HELP, modes.add_arguments, modes.run),
    "reference": (reference.HELP, reference.add_arguments, reference.run),
    "publish": (publish.HELP, publish.add_arguments, publish.run),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-parser per entry of `SUBCOMMANDS`, each remembering its runner as ``run``.

    Example:
        build_parser().parse_args(["forward", "--repeats", "5"]).run  # forward.run
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the sub-command, runs it and prints its result, with the machine's facts, as JSON.

    Args:
        argv: The arguments after the program name (default: the command line's).

    Example:
        main(["peak", "--repeats", "3"])  # prints {"benchmark": "peak", ..., "machine": {...}}
    """
    args = build_parser().parse_args(argv)
    print(json.dumps({**args.run(args), "machine": machine_facts()}, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
