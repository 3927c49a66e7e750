"""Every command is a console script and a ``python -m`` entry over the same ``main(argv)``, with one flag style."""

import ast
import configparser
import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Console script -> the module `python -m` runs for it.
PYTHON_M = {
    "tfbrats-synthetic": "tfbrats.data.synthetic",
    "tfbrats-prepare": "tfbrats.prepare",
    "tfbrats-train": "tfbrats.train",
    "tfbrats-tune": "tfbrats.tune",
    "tfbrats-predict": "tfbrats.predict",
    "tfbrats-evaluate": "tfbrats.evaluate",
    "tfbrats-clinical": "tfbrats.clinical",
    "tfbrats-mask-figure": "tfbrats.clinical.figure",
    "tfbrats-demo": "tfbrats.demo",
}


def console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: name -> ``module:function``, as pip installs them."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return {name.strip(): target.strip() for name, target in (line.split("=") for line in lines)}


def call(target: str, argv: list[str]) -> tuple[int, str, str]:
    """Calls a ``module:function`` entry point as its console script does; its status, stdout and stderr."""
    module, function = target.split(":")
    entry = getattr(importlib.import_module(module), function)
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        status = entry(argv)
    return status, out.getvalue(), err.getvalue()


def undocumented(help_text: str, flag_values) -> list[str]:
    """The flags of `flag_values` that a help text does not list (absl writes booleans ``--[no]name``)."""
    return [name for name in flag_values if f"--{name}:" not in help_text and f"--[no]{name}:" not in help_text]


def test_every_command_module_is_a_console_script_and_a_python_m_entry():
    scripts = console_scripts()
    assert set(scripts) == set(PYTHON_M)
    commands = {path.stem for path in (ROOT / "tfbrats" / "cli").glob("*.py") if path.name != "__init__.py"}
    assert {target.split(":")[0] for target in scripts.values()} == {f"tfbrats.cli.{name}" for name in commands}
    for script, target in scripts.items():
        assert target == f"tfbrats.cli.{script.removeprefix('tfbrats-').replace('-', '_')}:main"
        shim = ROOT / Path(*PYTHON_M[script].split("."))
        source = (shim / "__main__.py" if shim.is_dir() else shim.with_suffix(".py")).read_text()
        assert f"from {target.split(':')[0]} import main" in source and 'if __name__ == "__main__":' in source


def test_every_console_script_prints_its_flags_for_help_and_exits_0():
    """All commands load in one process (each has its own flags) and each --help names every flag it has."""
    for script, target in console_scripts().items():
        for argument in ("--help", "--helpfull"):
            status, out, err = call(target, [argument])
            assert status == 0, (script, err)
            own = importlib.import_module(target.split(":")[0]).FLAGS
            missing = undocumented(out, own)
            assert len(list(own)) >= 2 and not missing, (script, missing)
            assert "--flagfile" in out, script


@pytest.mark.parametrize("argv, expected", [
    (["--out=x", "unexpected"], "unexpected arguments ['unexpected']"),
    (["--out=x", "--no_such_flag=1"], "no_such_flag"),
    (["--cases=2"], "--out"),
    (["--out=x", "--cases=many"], "--cases=many"),
])
def test_usage_errors_exit_2_with_one_message(argv, expected):
    status, out, err = call(console_scripts()["tfbrats-synthetic"], argv)
    assert status == 2 and out == ""
    assert err.startswith("error: ") and expected in err and "Traceback" not in err, err


def test_a_flagfile_gives_a_command_its_flags_and_the_command_line_adds_to_them(tmp_path):
    flagfile = tmp_path / "small.flags"
    flagfile.write_text("# a comment line\n--cases=3\n--shape=24,20,12\n--layout=brats2023\n")
    status, out, err = call(console_scripts()["tfbrats-synthetic"],
                            [f"--flagfile={flagfile}", f"--out={tmp_path / 'data'}", "--cases=2"])
    assert status == 0, err
    folders = sorted(path.name for path in (tmp_path / "data").iterdir())
    assert folders == ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    assert nib.load(tmp_path / "data" / folders[0] / f"{folders[0]}-t2f.nii.gz").shape == (24, 20, 12)
    # A second call in the same process starts from the defaults, not from the first call's flags.
    status, out, err = call(console_scripts()["tfbrats-synthetic"], [f"--out={tmp_path / 'again'}", "--cases=1",
                                                                     "--shape=16,16,8"])
    assert status == 0 and "(brats2020 layout)" in out, err


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(PYTHON_M))
def test_python_m_help_exits_0_and_names_the_flags(script):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", PYTHON_M[script], "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    own = importlib.import_module(console_scripts()[script].split(":")[0]).FLAGS
    assert not undocumented(done.stdout, own), done.stdout[-2000:]


def _imported_modules(tree: ast.AST, skip_main_block: bool) -> set[str]:
    """Every module a source imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    skipped = set()
    if skip_main_block:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                skipped |= {id(child) for child in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_library_module_or_other_command_imports_a_command_module():
    """A command holds no logic anyone else needs: only its ``python -m`` entry's __main__ block imports it."""
    commands = {f"tfbrats.cli.{path.stem}" for path in (ROOT / "tfbrats" / "cli").glob("*.py")
                if path.stem != "__init__"}
    for path in sorted([*ROOT.glob("tfbrats/**/*.py"), *ROOT.glob("tools/**/*.py")]):
        own = f"tfbrats.cli.{path.stem}" if path.parent == ROOT / "tfbrats" / "cli" else None
        imported = _imported_modules(ast.parse(path.read_text(), str(path)), skip_main_block=True)
        assert not (imported & commands) - {own}, f"{path.relative_to(ROOT)} imports {imported & commands}"
