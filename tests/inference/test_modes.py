"""Inference modes: their windows, the bfloat16 test of the CPU, and the choice rule."""

import pytest

from tfbrats.contract import SegmentationContract, Window
from tfbrats.inference.modes import (
    PAPER_PATCH,
    InferenceMode,
    candidate_modes,
    choose_mode,
    cpu_has_bfloat16,
    refusals,
)

OWN = Window(patch_size=(8, 64, 64), steps=(8, 32, 32), batch_size=3, blend="gaussian")


def test_each_mode_replaces_the_window_and_keeps_batch_and_blending():
    windows = {mode.name: mode.window_for(OWN) for mode in candidate_modes(bfloat16=True)}
    assert windows["contract"] == OWN and windows["contract_bf16"] == Window(**{**vars(OWN),
                                                                               "precision": "mixed_bfloat16"})
    assert windows["paper_windows"].patch_size == PAPER_PATCH and windows["paper_windows"].steps == (24, 32, 32)
    assert windows["no_overlap"].steps == PAPER_PATCH and windows["full_volume"].patch_size is None
    assert all(w.batch_size == 3 and w.blend == "gaussian" for w in windows.values())
    assert {w.precision for name, w in windows.items() if name.endswith("_bf16")} == {"mixed_bfloat16"}
    assert len(windows) == 8 and [m.name for m in candidate_modes(bfloat16=False)] == [
        "contract", "paper_windows", "no_overlap", "full_volume"]
    for name in windows:
        assert InferenceMode.from_name(name).name == name
    contract = InferenceMode("full_volume", "mixed_bfloat16").apply(SegmentationContract(window=OWN))
    assert SegmentationContract.from_json(contract.to_json()) == contract
    assert contract.to_json()["window"]["precision"] == "mixed_bfloat16"
    assert "precision" not in SegmentationContract(window=OWN).to_json()["window"]


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="quarter"):
        InferenceMode.from_name("quarter")
    with pytest.raises(ValueError, match="precision"):
        InferenceMode("contract", "int8")


def test_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: EPYC\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_bfloat16(info)
    info.write_text("model name\t: EPYC\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bfloat16(info)
    info.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_bfloat16(info) and not cpu_has_bfloat16(tmp_path / "absent")


def test_the_fastest_mode_within_the_tolerance_in_every_region_is_chosen():
    dice = {"contract": {"WT": 0.90, "TC": 0.80, "ET": 0.70},
            "full_volume": {"WT": 0.95, "TC": 0.80, "ET": 0.69},  # fastest, but ET drops 0.01
            "no_overlap": {"WT": 0.896, "TC": 0.796, "ET": 0.696},  # every drop 0.004
            "paper_windows": {"WT": 0.91, "TC": 0.81, "ET": 0.71}}
    seconds = {"contract": 9.0, "full_volume": 1.0, "no_overlap": 2.0, "paper_windows": 5.0}
    assert refusals(dice, "contract") == {"full_volume": "ET 0.6900 < 0.7000 - 0.005"}
    assert choose_mode(seconds, dice, "contract") == "no_overlap"
    assert choose_mode(seconds, dice, "contract", tolerance=0.02) == "full_volume"
    assert choose_mode(seconds, dice, "contract", tolerance=0.0) == "paper_windows"
    assert choose_mode({**seconds, "contract": 0.5}, dice, "contract") == "contract"
    assert choose_mode({**seconds, "paper_windows": 9.0}, dice, "contract", 0.0) == "contract"  # a tie keeps it
    with pytest.raises(ValueError, match="reference"):
        choose_mode(seconds, dice, "mirror")


def test_a_mode_whose_labels_move_away_from_the_paper_windows_is_refused_however_accurate():
    dice = {"contract": {"WT": 0.90}, "paper_windows": {"WT": 0.90}, "no_overlap": {"WT": 0.90},
            "full_volume": {"WT": 0.93}}
    seconds = {"contract": 9.0, "paper_windows": 5.0, "no_overlap": 2.0, "full_volume": 1.0}
    agreement = {"contract": 0.97, "paper_windows": 1.0, "no_overlap": 0.9951, "full_volume": 0.9915}
    assert refusals(dice, "contract", agreement=agreement) == {
        "contract": "WT labels agree with paper_windows at 0.9700 < 0.995",
        "full_volume": "WT labels agree with paper_windows at 0.9915 < 0.995"}
    assert choose_mode(seconds, dice, "contract", agreement=agreement) == "no_overlap"
    assert choose_mode(seconds, dice, "contract", agreement=agreement, min_agreement=0.999) == "paper_windows"
    assert choose_mode(seconds, dice, "contract", agreement=agreement, min_agreement=0.0) == "full_volume"
    assert choose_mode({"contract": 9.0, "full_volume": 1.0}, dice, "contract",  # nothing agrees: the reference
                       agreement={"contract": 0.9, "full_volume": 0.9}) == "contract"
