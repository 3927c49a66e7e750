"""The repository's code and documents stand alone: nothing cites documents kept outside it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("tfbrats/**/*.py"), *ROOT.glob("tools/**/*.py"), *ROOT.glob("configs/*"),
                *ROOT.glob("docs/*.md"), ROOT / "README.md"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_documents_outside_the_repository(path):
    text = path.read_text()
    assert "DESIGN" not in text and "§" not in text, f"{path} cites a document that is not in the repository"


def test_every_package_module_is_collected_for_doctests():
    """CI runs `pytest --doctest-modules tfbrats` over every module, the commands included: nothing is left out,
    and no command declares its flags on absl's global FLAGS (each has its own, so all load in one process)."""
    assert not (ROOT / "tfbrats" / "conftest.py").exists(), "tfbrats/conftest.py would leave modules out"
    for path in sorted(ROOT.glob("tfbrats/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr.startswith(("DEFINE", "mark_flag", "register_validator"))):
                assert any(keyword.arg == "flag_values" for keyword in node.keywords), (
                    f"{path.relative_to(ROOT)}:{node.lineno} declares a flag on absl's global FLAGS")


def test_the_readme_is_a_front_door_with_the_two_quick_start_commands():
    """README.md stays short (the rest lives in docs/) and quotes the two commands the Makefile provides."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md is over 300 lines: move the detail into a guide under docs/"
    quick_start = ("make demo   # synthetic BraTS data -> train -> predict -> evaluate; prints the Dice/HD95 table\n"
                   "make test   # the test suite on the newest stack, then a short job on the oldest (what CI runs)\n")
    assert f"```bash\n{quick_start}```" in readme
    targets = {line.split(":")[0] for line in (ROOT / "Makefile").read_text().splitlines() if ":" in line}
    assert {"demo", "test"} <= targets


def test_every_guide_the_readme_links_is_a_heading_of_its_own():
    """Each guide under docs/ starts with a title, and the README names every guide in the repository."""
    readme = (ROOT / "README.md").read_text()
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert guide.read_text().startswith("# "), f"{guide} does not start with a '# ' title"
        assert f"(docs/{guide.name})" in readme, f"README.md does not link {guide.name}"


def test_the_architecture_names_every_module():
    """docs/architecture.md's "Where things are" table lists every module of the package and of tools/."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    modules = [path for path in [*ROOT.glob("tfbrats/**/*.py"), *ROOT.glob("tools/*.py")]
               if path.name not in ("__init__.py", "conftest.py")]
    missing = [str(path.relative_to(ROOT)) for path in modules if f"`{path.relative_to(ROOT).as_posix()}`" not in table]
    assert not missing, f"docs/architecture.md does not say where these are: {missing}"


def test_docstring_examples_run_rather_than_skip():
    """Docstring examples make their own data; `+SKIP` is kept for the few that need what cannot be made here."""
    skipped = [f"{path.relative_to(ROOT)}:{number}" for path in sorted(ROOT.glob("tfbrats/**/*.py"))
               for number, line in enumerate(path.read_text().splitlines(), start=1) if "doctest: +SKIP" in line]
    assert len(skipped) <= 10, f"{len(skipped)} docstring lines are skipped (10 at most): {skipped}"
