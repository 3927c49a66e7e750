"""The repository's code and documents stand alone: nothing cites documents kept outside it."""

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
    """CI runs `pytest --doctest-modules tfbrats`; the only modules left out are the absl entry points."""
    from tfbrats.conftest import collect_ignore

    for name in collect_ignore:
        text = (ROOT / "tfbrats" / name).read_text()
        assert "flags.DEFINE" in text and "app.run(main)" in text, f"{name} is skipped but is no absl entry point"
