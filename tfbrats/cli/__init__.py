"""The commands of tfbrats, one module each, and what they share.

Every command is a module here with its flags on its own `absl.flags.FlagValues` (so any number
of commands can be imported in one process) and a ``main(argv=None) -> int`` that parses them and
calls library functions; the library never reads flags. Each is a console script and a
``python -m`` entry:

=====================  ==================================  ============================
console script         ``python -m``                       module
=====================  ==================================  ============================
``tfbrats-synthetic``  ``tfbrats.data.synthetic``          `tfbrats.cli.synthetic`
``tfbrats-prepare``    ``tfbrats.prepare``                 `tfbrats.cli.prepare`
``tfbrats-train``      ``tfbrats.train``                   `tfbrats.cli.train`
``tfbrats-tune``       ``tfbrats.tune``                    `tfbrats.cli.tune`
``tfbrats-predict``    ``tfbrats.predict``                 `tfbrats.cli.predict`
``tfbrats-evaluate``   ``tfbrats.evaluate``                `tfbrats.cli.evaluate`
``tfbrats-clinical``   ``tfbrats.clinical``                `tfbrats.cli.clinical`
``tfbrats-mask-figure`` ``tfbrats.clinical.figure``        `tfbrats.cli.mask_figure`
``tfbrats-demo``       ``tfbrats.demo``                    `tfbrats.cli.demo`
=====================  ==================================  ============================

One flag style everywhere, the commands' and the scripts' in ``tools/`` alike: ``--name=value``,
snake_case names, lists and sizes comma-separated (``--shape=96,96,64``, ``--patch_size=24,128,128``),
booleans as ``--name`` / ``--noname``, and ``--flagfile=FILE`` for a file of such lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from absl import flags

# What asks for a command's help instead of running it (absl's own names for it included).
HELP_ARGUMENTS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


class UsageError(Exception):
    """A command was called wrongly (a flag's value, a missing or conflicting flag): exit status 2."""


def parse_size(text: str) -> tuple[int, int, int]:
    """Parses "D,H,W" into three positive integers; usable as an argparse `type`.

    Example:
        >>> parse_size("24,128,128")
        (24, 128, 128)
        >>> parse_size("24,128")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected three positive integers D,H,W; got '24,128'
    """
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers D,H,W; got {text!r}")
    return values


def name_list(choices: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    """An argparse `type` for a comma-separated list of names ("a,b"), each one of `choices` when given.

    Example:
        >>> name_list(["tensorflow", "onnx", "openvino"])("onnx,openvino")
        ['onnx', 'openvino']
        >>> name_list(["tensorflow", "onnx"])("onnx,tflite")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 'tflite' is not one of tensorflow, onnx
    """

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected one or more names separated by commas; got {text!r}")
        for name in names:
            if choices is not None and name not in choices:
                raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(choices)}")
        return names

    return parse


def size_flag(values: Sequence[str] | None, name: str) -> tuple[int, int, int] | None:
    """The value of a comma-list flag holding a size (``--patch_size=24,128,128``), or None when unset.

    Raises `UsageError` naming the flag when it is not three positive integers.

    Example:
        >>> size_flag(["24", "128", "128"], "patch_size"), size_flag(None, "steps")
        ((24, 128, 128), None)
        >>> size_flag(["0", "1", "1"], "steps")
        Traceback (most recent call last):
        ...
        tfbrats.cli.UsageError: --steps: expected three positive integers D,H,W; got '0,1,1'
    """
    if not values:
        return None
    try:
        return parse_size(",".join(values))
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"--{name}: {error}") from None


def help_text(flag_values: flags.FlagValues, doc: str | None) -> str:
    """A command's help: its module docstring, then every flag it defines with its help and default."""
    return f"{(doc or '').strip()}\n\nFlags:\n{flag_values.get_help(prefix='  ')}\n"


def _start_absl_logging() -> None:
    """absl logging as `absl.app.run` sets it up: its handler on stderr, at INFO (unless a host program has
    already parsed absl's own flags, whose --verbosity then stands)."""
    from absl import logging

    logging.use_absl_handler()
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
        if flags.FLAGS["verbosity"].using_default_value:
            flags.FLAGS.verbosity = 0


def run_command(flag_values: flags.FlagValues, body: Callable[[], int | None], argv: Sequence[str] | None = None,
                *, doc: str | None = None, program: str | None = None) -> int:
    """Parses `argv` into `flag_values` and runs `body`; the exit status of a command's ``main``.

    ``--help`` (or ``-h``, ``--helpfull``) prints `doc` and the flags and returns 0; a flag that
    does not parse, a missing required flag, a positional argument or a `UsageError` raised by
    `body` prints ``error: ...`` on stderr and returns 2; otherwise `body`'s status (None is 0).
    ``--flagfile=FILE`` reads flags from a file, as absl applications do. Run as a program (`argv`
    None), absl's logging is set up as `absl.app.run` sets it up; called with `argv` (from Python,
    a test), the process' logging is left as it is.

    Args:
        flag_values: The command's own flags.
        body: Runs the command with the parsed flags.
        argv: The arguments, without the program name (default: ``sys.argv[1:]``).
        doc: The command's description, shown by ``--help``.
        program: The program name in messages (default: ``sys.argv[0]``'s file name).

    Example:
        >>> from absl import flags
        >>> own = flags.FlagValues()
        >>> _ = flags.DEFINE_integer("cases", 2, "How many cases.", flag_values=own)
        >>> run_command(own, lambda: print("cases:", own.cases), ["--cases=3"])
        cases: 3
        0
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     run_command(own, lambda: 0, ["--cases=three"], program="demo")
        2
        >>> print(err.getvalue(), end="")
        error: flag --cases=three: invalid literal for int() with base 10: 'three'
        Pass --help to see the flags of demo.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    program = program or os.path.basename(sys.argv[0] or "tfbrats")
    head = arguments[:arguments.index("--")] if "--" in arguments else arguments
    if any(argument in HELP_ARGUMENTS for argument in head):
        print(help_text(flag_values, doc), end="")
        return 0
    flag_values.unparse_flags()  # a second call in one process starts from the defaults again
    try:
        positional = flag_values([program, *arguments])[1:]
        if positional:
            raise UsageError(f"unexpected arguments {positional}; every input is a --name=value flag, sizes and "
                             "lists comma-separated (--shape=96,96,64)")
        if argv is None:  # a process of its own (console script, python -m): absl's logging, as absl.app sets it
            _start_absl_logging()
        status = body()
    except (flags.Error, UsageError) as error:
        print(f"error: {error}\nPass --help to see the flags of {program}.", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)
