"""Case discovery for every layout, the manifest, and the patient split."""

import shutil
from pathlib import Path

import pytest

from tfbrats.data import Case, find_cases, split_cases


def _touch_case(root: Path, case_id: str, names: list[str], sep: str = "_") -> Path:
    folder = root / case_id
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{case_id}{sep}{name}.nii.gz").write_bytes(b"")
    return folder


def test_brats2020_layout(brats2020: Path) -> None:
    index = find_cases(brats2020)
    assert index.layout == "brats2020"
    assert [c.case_id for c in index.cases] == [f"BraTS20_Training_00{i}" for i in range(1, 5)]
    case = index.cases[0]
    assert set(case.images) == {"t1", "t1ce", "t2", "flair"}
    assert case.images["t1ce"].name == "BraTS20_Training_001_t1ce.nii.gz"
    assert case.seg is not None and case.seg.name.endswith("_seg.nii.gz")
    assert case.et_label == 4


def test_brats2021_layout(tmp_path: Path) -> None:
    for i in range(2):
        _touch_case(tmp_path, f"BraTS2021_0000{i}", ["t1", "t1ce", "t2", "flair", "seg"])
    index = find_cases(tmp_path)
    assert index.layout == "brats2021"
    assert [c.case_id for c in index.cases] == ["BraTS2021_00000", "BraTS2021_00001"]
    assert index.cases[0].et_label == 4


def test_brats2023_layout_maps_names_and_et(tmp_path: Path) -> None:
    _touch_case(tmp_path, "BraTS-GLI-00000-000", ["t1n", "t1c", "t2w", "t2f", "seg"], sep="-")
    index = find_cases(tmp_path)
    assert index.layout == "brats2023"
    case = index.cases[0]
    assert case.case_id == "BraTS-GLI-00000-000"
    assert case.images["t1ce"].name == "BraTS-GLI-00000-000-t1c.nii.gz"
    assert case.images["flair"].name == "BraTS-GLI-00000-000-t2f.nii.gz"
    assert case.et_label == 3


def test_validation_cases_have_no_seg(tmp_path: Path) -> None:
    _touch_case(tmp_path, "BraTS20_Validation_001", ["t1", "t1ce", "t2", "flair"])
    case = find_cases(tmp_path).cases[0]
    assert case.seg is None and not case.has_seg


def test_single_case_folder(brats2020: Path) -> None:
    index = find_cases(brats2020 / "BraTS20_Training_002")
    assert index.layout == "case"
    assert [c.case_id for c in index.cases] == ["BraTS20_Training_002"]


def test_manifest(tmp_path: Path, brats2020: Path) -> None:
    src = brats2020 / "BraTS20_Training_001"
    lines = ["case_id,t1,t1ce,t2,flair,seg,et_label"]
    lines.append(
        ",".join(
            ["a"]
            + [str(src / f"BraTS20_Training_001_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair", "seg")]
            + ["4"]
        )
    )
    shutil.copy(src / "BraTS20_Training_001_flair.nii.gz", tmp_path / "f.nii.gz")
    lines.append("b,,,,f.nii.gz,,3")
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(lines) + "\n")
    index = find_cases(manifest)
    assert index.layout == "manifest"
    a, b = index.cases
    assert a.seg == src / "BraTS20_Training_001_seg.nii.gz" and a.et_label == 4
    assert b.images == {"flair": tmp_path / "f.nii.gz"} and b.seg is None and b.et_label == 3
    (tmp_path / "manifest.csv").write_text(manifest.read_text())
    assert find_cases(tmp_path).layout == "manifest"


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_cases(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no BraTS cases"):
        find_cases(tmp_path)
    _touch_case(tmp_path, "BraTS20_Training_001", ["flair"])
    _touch_case(tmp_path, "BraTS-GLI-00000-000", ["t2f"], sep="-")
    with pytest.raises(ValueError, match="mixes case layouts"):
        find_cases(tmp_path)
    (tmp_path / "m.csv").write_text("id,path\nx,y\n")
    with pytest.raises(ValueError, match="lacks 'case_id'"):
        find_cases(tmp_path / "m.csv")


def test_split_is_deterministic_disjoint_and_complete() -> None:
    cases = [Case(f"c{i:02d}", {}, None, 4) for i in range(23)]
    folds = [split_cases(cases, fold=f, seed=3) for f in range(5)]
    vals = [{c.case_id for c in val} for _, val in folds]
    assert sum(len(v) for v in vals) == 23
    assert set().union(*vals) == {c.case_id for c in cases}
    for train, val in folds:
        assert not {c.case_id for c in train} & {c.case_id for c in val}
        assert len(train) + len(val) == 23
    assert split_cases(list(reversed(cases)), fold=2, seed=3) == folds[2]
    assert split_cases(cases, fold=2, seed=4) != folds[2]
    train, val = split_cases(cases, val_ids=["c03", "c07"])
    assert [c.case_id for c in val] == ["c03", "c07"] and len(train) == 21
    with pytest.raises(ValueError, match="fold must be"):
        split_cases(cases, fold=5)


@pytest.mark.parametrize("case_id", ["../victim/c1", "/tmp/victim/c1", ".."])
def test_a_manifest_case_id_that_is_not_a_file_name_is_refused_with_its_row(tmp_path: Path, case_id: str) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"case_id,flair\nok,f.nii.gz\n{case_id},f.nii.gz\n")
    with pytest.raises(ValueError, match=rf"manifest {manifest}, line 3: case id '{case_id}' is not a file name"):
        find_cases(manifest)


@pytest.mark.parametrize("link", ["broken", "self"])
def test_a_dangling_link_is_a_file_of_the_case_and_reading_it_names_it(brats2020: Path, tmp_path: Path,
                                                                         link: str) -> None:
    from tfbrats.data import CaseError, load_case

    source = find_cases(brats2020).cases[0]
    folder = tmp_path / source.case_id
    folder.mkdir()
    for path in source.images.values():
        (folder / path.name).symlink_to(path)
    t2 = folder / source.images["t2"].name
    t2.unlink()
    t2.symlink_to(t2 if link == "self" else tmp_path / "moved_away.nii.gz")
    case = find_cases(folder).cases[0]
    assert case.images["t2"] == t2, "the link is the case's T2, not a missing modality"
    with pytest.raises(CaseError, match=f"t2 file {t2}"):
        load_case(case, allow_missing=True)
