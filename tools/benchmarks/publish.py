"""``publish``: runs ``modes`` and ``reference``, keeps their JSON, and writes the performance table from it.

One command makes the per-case table of ``docs/performance.md`` on the machine it runs on (an
idle one: the figures are what the guide publishes). ``modes`` (every mode x backend) and
``reference`` (a case by ``python -m tfbrats.predict``'s defaults against 12 forward passes of the
published PyTorch model) run one after the other, each as ``tools/benchmark.py`` in its own
process; their JSON goes to ``--out`` (``modes.json``, ``reference.json``), and the table, with the
CPU (`lscpu` model and flags), the stack and the commit of each, replaces what lies between the
markers `BEGIN` and `END` of ``--doc``. ``--render_only`` rewrites the table from the JSON already in
``--out``.

Example:
    python tools/benchmark.py publish --model=runs/demo --out=docs/benchmarks/idle --doc=docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tfbrats.cli import name_list, parse_size

from .common import ENTRY
from .reference import PUBLISHED_REPEATS

HELP = "run modes and reference, keep their JSON, write the performance table into a Markdown file"
BEGIN = "<!-- performance table: written by `python tools/benchmark.py publish`; do not edit by hand -->"
END = "<!-- end of the performance table -->"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")  # the flags that decide the kernels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``publish``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--out", "figures"]).doc
        PosixPath('docs/performance.md')
    """
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/idle"), help="folder for modes.json and "
                        "reference.json")
    parser.add_argument("--doc", type=Path, default=Path("docs/performance.md"), help="Markdown file holding the "
                        "table's markers")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="Markdown file that gets the "
                        "comparison with the published model alone, between the same markers")
    parser.add_argument("--render_only", action="store_true", help="only rewrite the tables from --out's JSON")
    parser.add_argument("--model", type=Path, help="the run to measure (e.g. runs/demo: configs/demo.flags, tuned)")
    parser.add_argument("--case", type=Path, help="modes: the timed case (default: synthetic 240x240x155)")
    parser.add_argument("--held_out", type=Path, help="modes: labelled cases for the Dice change")
    parser.add_argument("--modes", type=name_list(), help="modes: mode names, comma-separated (default: every mode "
                        "this CPU runs)")
    parser.add_argument("--backends", type=name_list(), help="modes: backends, comma-separated (default: all three)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each figure")
    parser.add_argument("--shape", type=parse_size, default=(240, 240, 155), metavar="X,Y,Z",
                        help="reference: the synthetic case's size")
    parser.add_argument("--window", type=parse_size, default=(24, 128, 128), metavar="D,H,W",
                        help="reference: the published model's window")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs both benchmarks (unless ``--render_only``) and writes the table into ``--doc``.

    Example:
        python tools/benchmark.py publish --out=docs/benchmarks/idle --render_only
    """
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        common = [f"--model={args.model}"] if args.model else []
        modes = [*common, f"--repeats={args.repeats}"]
        for flag, value in (("--case", args.case), ("--held_out", args.held_out)):
            modes += [f"{flag}={value}"] if value else []
        for flag, values in (("--modes", args.modes), ("--backends", args.backends)):
            modes += [f"{flag}={','.join(values)}"] if values else []
        _benchmark("modes", modes, args.out / "modes.json")
        shape, window = (",".join(map(str, size)) for size in (args.shape, args.window))
        reference = [*common, f"--repeats={max(args.repeats, PUBLISHED_REPEATS)}", f"--shape={shape}",
                     f"--window={window}"]
        _benchmark("reference", reference, args.out / "reference.json")
    figures = {name: json.loads((args.out / f"{name}.json").read_text()) for name in ("modes", "reference")
               if name == "reference" or (args.out / f"{name}.json").exists()}
    table = render(figures.get("modes"), figures["reference"], args.out)
    write_between_markers(args.doc, table)
    write_between_markers(args.readme, render_reference(figures["reference"], args.out, args.doc))
    return {"benchmark": "publish", "doc": str(args.doc), "readme": str(args.readme),
            "json": [str(args.out / f"{n}.json") for n in figures], "table_lines": len(table.splitlines())}


def _benchmark(name: str, arguments: list[str], path: Path) -> None:
    """``tools/benchmark.py NAME ARGUMENTS`` in its own process; its JSON written (atomically) to `path`."""
    from tfbrats.files import write_text

    command = [sys.executable, str(ENTRY), name, *arguments]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {finished.returncode}; expected 0. "
                           f"Its error output:\n{finished.stderr[-4000:]}")
    write_text(path, finished.stdout)


def machine_line(figures: dict[str, Any]) -> str:
    """CPU, the flags that decide the kernels, the stack and the commit of one benchmark's JSON.

    Example:
        >>> machine_line({"lscpu": {"Model name": "AMD EPYC", "CPU(s)": "2", "Flags": "avx2 avx512f"},
        ...               "stack": {"tensorflow": "2.21.0"}, "machine": {"commit": "abc1234"}})
        'CPU AMD EPYC, 2 CPUs, flags avx2 avx512f; tensorflow 2.21.0; commit abc1234'
    """
    cpu = figures.get("lscpu", {})
    flags = set(cpu.get("Flags", "").split())
    present = " ".join(flag for flag in FLAGS if flag in flags) or "none of " + " ".join(FLAGS)
    stack = ", ".join(f"{package} {version}" for package, version in figures.get("stack", {}).items())
    return (f"CPU {cpu.get('Model name', 'unknown')}, {cpu.get('CPU(s)', '?')} CPUs, flags {present}; {stack}; "
            f"commit {figures.get('machine', {}).get('commit', 'unknown')}")


def _signed(change: dict[str, float] | None) -> str:
    return " / ".join(f"{change[r]:+.4f}" for r in ("WT", "TC", "ET")) if change else ""


def mode_rows(modes: dict[str, Any]) -> list[str]:
    """One Markdown row per mode x backend of ``modes``' JSON (skipped ones say why).

    Example:
        >>> run = {"seconds": 2.0, "speedup": 3.0, "windows": 1, "peak_rss_gib": 2.5, "mean_dice": {"WT": 0.9,
        ...        "TC": 0.8, "ET": 0.7}, "dice_change": {"WT": 0.0, "TC": -0.01, "ET": 0.0},
        ...        "wt_dice_vs_paper_windows": 0.996}
        >>> mode_rows({"runs": {"full_volume/openvino": run}})[0].split(" | ")[2:]
        ['2.0', '3.00x', '1', '2.5', '0.9000 / 0.8000 / 0.7000', '+0.0000 / -0.0100 / +0.0000', '0.9960 |']
    """
    rows = []
    for key, run in modes["runs"].items():
        mode, backend = key.split("/")
        if "skipped" in run:
            rows.append(f"| `{mode}` | {backend} | skipped: {run['skipped']} | | | | | | |")
            continue
        dice = run.get("mean_dice")
        means = " / ".join(f"{dice[r]:.4f}" for r in ("WT", "TC", "ET")) if dice else ""
        paper = run.get("wt_dice_vs_paper_windows")
        rows.append(f"| `{mode}` | {backend} | {run['seconds']:.1f} | {run.get('speedup', 1.0):.2f}x | "
                    f"{run['windows']} | {run['peak_rss_gib']} | {means} | {_signed(run.get('dice_change'))} | "
                    f"{'' if paper is None else f'{paper:.4f}'} |")
    return rows


def render_reference(reference: dict[str, Any], folder: Path, guide: Path | None = None) -> str:
    """The Markdown of the goal's comparison: a case by the defaults against 12 passes of the published model.

    Example:
        text = render_reference(reference_json, Path("docs/benchmarks/idle"))
    """
    case, published = reference["tfbrats_predict"], reference["published_model"]
    verdict = "within" if reference["within_budget"] else "over"
    agreement = case.get("wt_dice_vs_paper_windows")
    whole_table = f"; the whole table: [{guide.name}]({guide})" if guide else ""
    return "\n".join([
        f"Measured by `python tools/benchmark.py publish` (`{folder}/reference.json`{whole_table}): "
        f"{machine_line(reference)}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| published PyTorch AlbuNet3D, one 1x3x{'x'.join(map(str, published['window']))} window, float32, "
        f"{published['threads']} threads (median seconds) | {published['seconds_per_pass']:.3f} |",
        f"| the budget: {reference['published_passes']} such passes (seconds) | {reference['budget_seconds']:.2f} |",
        f"| `python -m tfbrats.predict` defaults, one {'x'.join(map(str, case['case_shape']))} case, steady state "
        f"(mode `{case['inference_mode']}`, window {case['window'].get('patch_size') or 'full volume'}, "
        f"precision {case['window'].get('precision', 'float32')}; seconds) | {case['seconds_per_case']:.2f} |",
        f"| ratio case / budget ({verdict} the budget) | {reference['ratio_case_to_budget']:.2f} |",
        *([f"| whole-tumor Dice of the defaults' labels vs the paper's 24x128x128 windows (float32), same case | "
           f"{agreement:.4f} |"] if agreement is not None else []),
    ]) + "\n"


def render(modes: dict[str, Any] | None, reference: dict[str, Any], folder: Path) -> str:
    """The Markdown of the performance table: the goal's comparison, then every mode x backend.

    Without `modes` (no ``modes.json`` in the folder: ``--render_only`` after a ``reference`` run
    alone), the second table says it was not measured with these figures.

    Example:
        text = render(modes_json, reference_json, Path("docs/benchmarks/idle"))
    """
    comparison = "**A case against the published model.** " + render_reference(reference, folder)
    if modes is None:
        return (f"{comparison}\n**Every inference mode x backend**: not measured with these figures (no "
                f"`{folder}/modes.json`); `python tools/benchmark.py modes --model=runs/demo` measures it.\n")
    lines = [
        comparison,
        f"**Every inference mode x backend** (`modes.json`, model {modes.get('model')}, case {modes.get('case')}, "
        f"held-out {modes.get('held_out')}, {modes.get('repeats')} repeats): {machine_line(modes)}.",
        "",
        "The reference row is `contract`/tensorflow: the training patch in float32, the window every mode is held to "
        "(`tfbrats.tune` keeps a mode only within 0.005 of its validation Dice in every region and with whole-tumor "
        "labels agreeing with the paper's windows' at 0.995 or more).",
        "",
        "| mode | backend | seconds per case | speed-up vs reference | windows | peak RSS (GiB) | held-out mean Dice "
        "WT / TC / ET | change vs reference WT / TC / ET | WT Dice vs the paper's windows |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *mode_rows(modes),
    ]
    return "\n".join(lines) + "\n"


def write_between_markers(path: Path, table: str) -> None:
    """Replaces what lies between `BEGIN` and `END` in `path` by `table` (atomically), or says what is missing.

    Example:
        write_between_markers(Path("docs/performance.md"), "| a |\\n")
    """
    from tfbrats.files import write_text

    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: expected the markers {BEGIN!r} and then {END!r} around the table; add them "
                         "where the table goes")
    write_text(path, text[: start + len(BEGIN)] + "\n" + table + text[end:])
