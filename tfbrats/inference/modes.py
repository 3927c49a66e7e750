"""Inference modes: how a volume is tiled and in which precision, and the rule that picks one.

A mode replaces only the contract's window (and its precision); the labels still come from the
same `window_probabilities` and `finish_segmentation`. The modes are the model's own window
(the training patch), the paper's 24x128x128 windows with its steps 24x32x32, the same windows
without overlap, and one pass over the whole cropped volume; each in float32, and in bfloat16
where the CPU computes in it (AVX512_BF16 or AMX).

`choose_mode` is the rule `python -m tfbrats.tune` applies: the fastest mode, by the seconds
measured on this machine, whose mean validation Dice is within `DICE_TOLERANCE` of the
reference mode's in every region, and whose whole-tumor labels agree with those of the paper's
windows (`AGREEMENT_MODE`) at a mean Dice of at least `MIN_AGREEMENT`. The second condition keeps
the default segmentation the published method's: a network's labels depend on how a case is
tiled (what it sees around each voxel), and a mode can keep the accuracy on validation while
moving the tumor's border elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from tfbrats.contract import DEFAULT_STEPS, SegmentationContract, Window

PAPER_PATCH = (24, 128, 128)
PAPER_STEPS = DEFAULT_STEPS
WINDOWS = ("contract", "paper_windows", "no_overlap", "full_volume")
DICE_TOLERANCE = 0.005
AGREEMENT_MODE = "paper_windows"
AGREEMENT_REGION = "WT"
MIN_AGREEMENT = 0.995
BFLOAT16 = "mixed_bfloat16"


@dataclasses.dataclass(frozen=True)
class InferenceMode:
    """A window kind of `WINDOWS` and a compute precision ("float32" or "mixed_bfloat16").

    Example:
        >>> mode = InferenceMode("no_overlap", "mixed_bfloat16")
        >>> mode.name, mode.window_for(Window(patch_size=(8, 64, 64))).steps
        ('no_overlap_bf16', (24, 128, 128))
    """

    window: str
    precision: str = "float32"

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise ValueError(f"inference mode window must be one of {WINDOWS}; got {self.window!r}")
        if self.precision not in ("float32", BFLOAT16):
            raise ValueError(f"inference mode precision must be float32 or {BFLOAT16}; got {self.precision!r}")

    @property
    def name(self) -> str:
        return self.window + ("_bf16" if self.precision == BFLOAT16 else "")

    @classmethod
    def from_name(cls, name: str) -> InferenceMode:
        """The mode a `name` stands for (`paper_windows`, `full_volume_bf16`, ...)."""
        window, bf16 = (name[: -len("_bf16")], True) if name.endswith("_bf16") else (name, False)
        return cls(window, BFLOAT16 if bf16 else "float32")

    def window_for(self, reference: Window) -> Window:
        """This mode's window, given the model's own (its batch size, blending and mirroring are kept)."""
        options = {"batch_size": reference.batch_size, "blend": reference.blend, "mirror_tta": reference.mirror_tta,
                   "precision": self.precision}
        if self.window == "contract":
            return dataclasses.replace(reference, precision=self.precision)
        if self.window == "full_volume":
            return Window(patch_size=None, steps=reference.steps, **options)
        steps = PAPER_PATCH if self.window == "no_overlap" else PAPER_STEPS
        return Window(patch_size=PAPER_PATCH, steps=steps, **options)

    def apply(self, contract: SegmentationContract, reference: Window | None = None) -> SegmentationContract:
        """`contract` with this mode's window, built on `reference` (default: the contract's window)."""
        return contract.replace(window=self.window_for(reference or contract.window))


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags as `/proc/cpuinfo` gives them ("unknown" and none without it).

    Example:
        >>> model, flags = cpu_info("/nonexistent")
        >>> model, flags
        ('unknown', frozenset())
    """
    model, flags = "unknown", frozenset()
    path = Path(cpuinfo)
    for line in path.read_text().splitlines() if path.is_file() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively: `avx512_bf16` or `amx_bf16` among its flags.

    Example:
        >>> isinstance(cpu_has_bfloat16(), bool)
        True
    """
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info(cpuinfo)[1])


def candidate_modes(bfloat16: bool | None = None) -> list[InferenceMode]:
    """Every window kind in float32, and in bfloat16 too when `bfloat16` (default: the CPU has it).

    Example:
        >>> [mode.name for mode in candidate_modes(bfloat16=False)]
        ['contract', 'paper_windows', 'no_overlap', 'full_volume']
    """
    bfloat16 = cpu_has_bfloat16() if bfloat16 is None else bfloat16
    precisions = ("float32", BFLOAT16) if bfloat16 else ("float32",)
    return [InferenceMode(window, precision) for precision in precisions for window in WINDOWS]


def refusals(dice: Mapping[str, Mapping[str, float]], reference: str, tolerance: float = DICE_TOLERANCE,
             agreement: Mapping[str, float] | None = None, min_agreement: float = MIN_AGREEMENT) -> dict[str, str]:
    """Modes that cost accuracy or move the labels, with why.

    Args:
        dice: Mean validation Dice per mode name, per region ({"WT": ..., "TC": ..., "ET": ...}).
        reference: The mode the others are held to.
        tolerance: The largest drop allowed in any region.
        agreement: Mean whole-tumor Dice between each mode's labels and `AGREEMENT_MODE`'s (modes
            missing from it are not held to it).
        min_agreement: The least agreement a mode may have.

    Example:
        >>> refusals({"a": {"WT": 0.9, "ET": 0.8}, "b": {"WT": 0.91, "ET": 0.797}}, "a", 0.005)
        {}
        >>> refusals({"a": {"WT": 0.9, "ET": 0.8}, "b": {"WT": 0.91, "ET": 0.7}}, "a", 0.005)
        {'b': 'ET 0.7000 < 0.8000 - 0.005'}
        >>> refusals({"a": {"WT": 0.9}, "b": {"WT": 0.9}}, "a", agreement={"a": 0.996, "b": 0.99})
        {'b': 'WT labels agree with paper_windows at 0.9900 < 0.995'}
    """
    held = dice[reference]
    agreement = agreement or {}
    refused = {}
    for name, regions in dice.items():
        why = [f"{r} {regions[r]:.4f} < {held[r]:.4f} - {tolerance}" for r in held if regions[r] < held[r] - tolerance]
        if agreement.get(name, 1.0) < min_agreement:
            why.append(f"{AGREEMENT_REGION} labels agree with {AGREEMENT_MODE} at {agreement[name]:.4f} "
                       f"< {min_agreement}")
        if why:
            refused[name] = "; ".join(why)
    return refused


def choose_mode(seconds: Mapping[str, float], dice: Mapping[str, Mapping[str, float]], reference: str,
                tolerance: float = DICE_TOLERANCE, agreement: Mapping[str, float] | None = None,
                min_agreement: float = MIN_AGREEMENT) -> str:
    """The fastest mode that `refusals` keeps; the reference when every other is refused.

    Args:
        seconds: Measured seconds per mode name (the same work for each).
        dice: Mean validation Dice per mode name and region.
        reference: The reference mode (always acceptable).
        tolerance: The largest drop allowed in any region.
        agreement: Mean whole-tumor Dice of each mode's labels against `AGREEMENT_MODE`'s.
        min_agreement: The least agreement a mode may have.

    Example:
        >>> dice = {"contract": {"WT": 0.90}, "full_volume": {"WT": 0.85}, "no_overlap": {"WT": 0.898}}
        >>> choose_mode({"contract": 9.0, "full_volume": 1.0, "no_overlap": 2.0}, dice, "contract")
        'no_overlap'
    """
    if reference not in dice or reference not in seconds:
        raise ValueError(f"the reference mode {reference!r} needs its seconds and Dice; got {sorted(seconds)}")
    refused = refusals(dice, reference, tolerance, agreement, min_agreement)
    accepted = [name for name in seconds if name in dice and name not in refused] or [reference]
    return min(accepted, key=lambda name: (seconds[name], name != reference))
