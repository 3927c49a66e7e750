"""The preprocessing cache: round trip, atomic writes, skipping finished cases, refusing mixes."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbrats.data import CaseError, find_cases, list_cached_cases, load_cache, load_case, prepare_cache
from tfbrats.data.preprocess import uncrop


def test_cache_round_trip(brats2020: Path, tmp_path: Path) -> None:
    cases = find_cases(brats2020).cases
    written = prepare_cache(cases, tmp_path, workers=2, progress=False)
    assert written == [c.case_id for c in cases]
    cached = load_cache(tmp_path)
    for case, loaded in zip(cases, cached):
        direct = load_case(case)
        assert isinstance(loaded.image, np.memmap)
        assert np.array_equal(loaded.image, direct.image) and loaded.image.dtype == np.float32
        assert np.array_equal(loaded.label, direct.label) and loaded.label.dtype == np.uint8
        meta = loaded.meta
        assert (meta.case_id, meta.box, meta.original_shape, meta.spacing, meta.et_label, meta.channels) == (
            direct.meta.case_id,
            direct.meta.box,
            direct.meta.original_shape,
            direct.meta.spacing,
            direct.meta.et_label,
            direct.meta.channels,
        )
        np.testing.assert_array_equal(meta.affine, direct.meta.affine)
        assert meta.header.binaryblock == direct.meta.header.binaryblock
        assert uncrop(loaded.label, meta).shape == (32, 48, 48)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_rerun_skips_finished_and_ignores_half_written(brats2020: Path, tmp_path: Path) -> None:
    cases = find_cases(brats2020).cases
    prepare_cache(cases[:2], tmp_path, workers=1, progress=False)
    stamp = (tmp_path / f"{cases[0].case_id}.image.npy").stat().st_mtime_ns
    # What a killed run leaves: a temporary file and an array without its JSON.
    (tmp_path / f".{cases[2].case_id}.image.npy.abc.tmp").write_bytes(b"partial")
    (tmp_path / f"{cases[2].case_id}.image.npy").write_bytes(b"partial")
    assert list_cached_cases(tmp_path) == [c.case_id for c in cases[:2]]
    written = prepare_cache(cases, tmp_path, workers=1, progress=False)
    assert written == [c.case_id for c in cases[2:]]
    assert (tmp_path / f"{cases[0].case_id}.image.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(load_cache(tmp_path)[2].image, load_case(cases[2]).image)


def test_refuses_mixed_settings(brats2020: Path, tmp_path: Path) -> None:
    cases = find_cases(brats2020).cases[:1]
    prepare_cache(cases, tmp_path, input_channels=3, workers=1, progress=False)
    with pytest.raises(ValueError, match="was made with settings .* use a new --cache_dir"):
        prepare_cache(cases, tmp_path, input_channels=4, workers=1, progress=False)


def test_bad_case_stops_before_any_work(brats2020: Path, tmp_path: Path) -> None:
    case = find_cases(brats2020).cases[0]
    broken = type(case)(case.case_id, {k: v for k, v in case.images.items() if k != "flair"}, case.seg, 4)
    with pytest.raises(CaseError, match="(?s)1 case\\(s\\) failed their checks.*no file for modality \\['flair'\\]"):
        prepare_cache([broken], tmp_path / "cache", progress=False)
    assert list_cached_cases(tmp_path / "cache") == []


def test_a_case_id_that_is_not_a_file_name_is_never_written_outside_the_cache(brats2020: Path,
                                                                              tmp_path: Path) -> None:
    from tfbrats.data.cache import write_cached_case

    case = load_case(find_cases(brats2020).cases[0])
    cache = tmp_path / "cache"
    for case_id in ("../victim/c1", str(tmp_path / "victim" / "c1")):
        escaping = dataclasses.replace(case, meta=dataclasses.replace(case.meta, case_id=case_id))
        with pytest.raises(ValueError, match="is not a file name"):
            write_cached_case(cache, escaping)
    assert not (tmp_path / "victim").exists()


@pytest.mark.slow
def test_prepare_refuses_a_manifest_case_id_that_leaves_the_cache(brats2020: Path, tmp_path: Path) -> None:
    flair = next((brats2020 / "BraTS20_Training_001").glob("*_flair.nii.gz"))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,t1,t1ce,t2,flair,seg\n../victim/c1," + ",".join([str(flair)] * 4) + ",\n")
    command = [sys.executable, "-m", "tfbrats.prepare", f"--data_dir={manifest}", f"--cache_dir={tmp_path / 'c'}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"manifest {manifest}, line 2: case id '../victim/c1' is not a file name" in result.stderr
    assert not (tmp_path / "victim").exists()


@pytest.mark.slow
def test_prepare_command(brats2020: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "tfbrats.prepare",
        f"--data_dir={brats2020}",
        f"--cache_dir={tmp_path}",
        "--workers=2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "wrote 4 cases, 4 in" in result.stdout and "4/4 cases" in result.stderr
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "wrote 0 cases, 4 in" in again.stdout
    mixed = subprocess.run(command + ["--input_channels=4"], capture_output=True, text=True)
    assert mixed.returncode == 1 and "was made with settings" in mixed.stderr
