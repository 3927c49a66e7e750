"""Header-declared sizes are checked against the file and a voxel limit before any voxel is allocated."""

import gzip
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfbrats.data import CaseError, check_case, find_cases
from tfbrats.data.nifti import GZIP_MAX_RATIO, load_header
from tfbrats.limits import DEFAULT_MAX_VOXELS, max_voxels

REPO = Path(__file__).resolve().parents[2]
BOMB_SHAPE = (2048, 2048, 1024)  # float32: 16 GiB


def write_header_only(path: Path, shape: tuple[int, ...], dtype=np.float32, padding: int = 0) -> Path:
    """A NIfTI file (gzipped for .nii.gz) holding a header that declares `shape` and `padding` random bytes."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + np.random.default_rng(0).bytes(padding)  # 4: no header extensions
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_case_of_header_bombs_is_refused_naming_the_file_in_little_memory(tmp_path, suffix):
    """Four files of a few hundred bytes, each declaring 16 GiB of float32: refused from the headers."""
    case = tmp_path / "bomb"
    for modality in ("t1", "t1ce", "t2", "flair"):
        write_header_only(case / f"bomb_{modality}{suffix}", BOMB_SHAPE)
    script = textwrap.dedent("""
        import resource, sys
        # A guard for the machine, should the check be missing: 4 GiB of address space at most.
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from tfbrats.data import CaseError, check_cases, find_cases, load_case
        (case,) = find_cases(sys.argv[1]).cases
        for attempt in (lambda: check_cases([case], input_channels=4), lambda: load_case(case, 4)):
            try:
                attempt()
                print("accepted")
            except CaseError as error:
                print(str(error).splitlines()[-1])
        # This process's own peak (VmHWM): ru_maxrss would keep the forking pytest process's peak.
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) * 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(case)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    *errors, peak = done.stdout.strip().splitlines()
    flair = case / f"bomb_flair{suffix}"
    assert errors == [errors[0]] * 2
    assert errors[0].startswith(f"case bomb: flair file {flair} declares shape {BOMB_SHAPE} float32 "
                                f"(4294967296 voxels), 17179869536 bytes"), errors[0]
    assert f"but the file holds {flair.stat().st_size}" in errors[0]
    assert int(peak) < 1.5e9, f"peak memory {int(peak) / 1e9:.2f} GB"


def test_a_small_gzip_file_claiming_2_gib_is_refused_before_reading(tmp_path):
    path = write_header_only(tmp_path / "c1_flair.nii.gz", (1024, 1024, 512), padding=1000)
    assert 1000 < path.stat().st_size < 1200
    with pytest.raises(CaseError, match=rf"^case c1: flair file {path} declares shape \(1024, 1024, 512\) float32 "
                                        rf"\(536870912 voxels\), 2147484000 bytes uncompressed, but the file holds "
                                        rf"{path.stat().st_size} gzip bytes, which inflate to at most "
                                        rf"{path.stat().st_size * GZIP_MAX_RATIO};"):
        load_header("c1", path, "flair")


def test_a_nifti_2_header_claiming_10_to_the_15_voxels_is_refused(tmp_path):
    header = nib.Nifti2Header()
    header.set_data_shape((100000,) * 3)
    path = tmp_path / "c1_t2.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4)
    with pytest.raises(CaseError, match=r"declares shape \(100000, 100000, 100000\) .* but the file holds 544 bytes"):
        load_header("c1", path, "t2")


def test_a_truncated_uncompressed_image_is_refused_from_its_header(brats2020, tmp_path):
    case = find_cases(brats2020).cases[0]
    image = nib.load(case.images["t2"])
    path = tmp_path / "t2.nii"
    nib.save(image, path)
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-1000])
    truncated = dict(case.images, t2=path)
    with pytest.raises(CaseError, match=rf"t2 file {path} declares shape {re.escape(str(image.shape))} int16 "
                                        rf"\({np.prod(image.shape)} voxels\), {full} bytes with its header, but the "
                                        rf"file holds {full - 1000} bytes"):
        check_case(type(case)(case.case_id, truncated, None, 4))


def test_the_gzip_bound_accepts_the_most_compressible_file(tmp_path):
    """Zeros at gzip's best compression inflate about 1029-fold, within the 1032 bound."""
    plain = tmp_path / "zeros.nii"
    nib.save(nib.Nifti1Image(np.zeros((256, 256, 256), np.uint8), np.eye(4)), plain)
    packed = tmp_path / "c1_seg.nii.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=9))
    assert plain.stat().st_size / packed.stat().st_size > 1000
    assert load_header("c1", packed, "seg").shape == (256, 256, 256)


def test_the_voxel_limit_is_checked_and_raised_through_the_environment(brats2020, monkeypatch):
    case = find_cases(brats2020).cases[0]
    voxels = int(np.prod(nib.load(case.images["flair"]).shape))
    monkeypatch.delenv("TFBRATS_MAX_VOXELS", raising=False)
    assert max_voxels() == DEFAULT_MAX_VOXELS
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", str(voxels - 1))
    with pytest.raises(CaseError, match=rf"flair file {case.images['flair']} declares shape .* \({voxels} voxels\), "
                                        rf"more than the limit of {voxels - 1} voxels per image; if the image is "
                                        rf"real, raise the limit: TFBRATS_MAX_VOXELS={voxels}$"):
        check_case(case)
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", str(voxels))
    check_case(case)
    monkeypatch.setenv("TFBRATS_MAX_VOXELS", "lots")
    with pytest.raises(ValueError, match="TFBRATS_MAX_VOXELS='lots' is not a positive whole number"):
        check_case(case)


def test_evaluation_reads_labels_through_the_same_check(tmp_path):
    from tfbrats.evaluation.folders import read_labels

    path = write_header_only(tmp_path / "case_a.nii.gz", (1024, 1024, 512), dtype=np.uint8)
    with pytest.raises(CaseError, match=rf"^{path} declares shape \(1024, 1024, 512\) uint8"):
        read_labels(path)
