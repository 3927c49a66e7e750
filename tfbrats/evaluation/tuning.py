"""Post-processing chosen on validation cases, the nnU-Net way: keep a step only where it measurably helps.

Every validation case of a run is segmented once as a whole volume with the model's own window;
the candidates then act on those labels alone (no network call), in the order `postprocess`
applies them:

1. removal of tumor components smaller than N voxels (`COMPONENT_CANDIDATES`);
2. relabelling of all enhancing tumor as necrosis in a case with fewer than T voxels of it
   (`ET_CANDIDATES`; BraTS scores a stray ET on a case without ET as Dice 0, HD95 373.13).

A candidate is admissible when it lowers no region's mean validation Dice (WT, TC, ET, with
BraTS' empty-mask rule); among the admissible ones the highest mean Dice over the three regions
wins, and a stronger step (larger N or T) replaces a weaker one only when it scores higher: on a
tie the weaker step stays. Validation cases say nothing about the volumes between two tied
thresholds, and a stronger one there can erase a real lesion on a new case (an ET threshold of
500 voxels chosen over an equal-scoring 200 turned a held-out case's 416-voxel enhancing tumor
into necrosis: ET Dice 0). Thresholds count voxels; BraTS data are resampled to 1 mm, so they are
mm^3 there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from tfbrats.contract import PostProcessing, SegmentationContract, postprocess
from tfbrats.data import PreprocessedCase
from tfbrats.evaluation.metrics import case_metrics, dice
from tfbrats.labels import REGIONS, region_masks

COMPONENT_CANDIDATES = (0, 10, 50, 100, 200)
ET_CANDIDATES = (0, 50, 100, 200, 500, 750, 1000)
# A candidate "does not lower" a mean when it loses less than this (float noise only).
TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One post-processing tried on the validation cases, with its mean Dice per region."""

    postprocessing: PostProcessing
    mean_dice: dict[str, float]

    @property
    def overall(self) -> float:
        return float(np.mean(list(self.mean_dice.values())))


@dataclasses.dataclass
class TuningResult:
    """The chosen post-processing, every candidate tried, and per-case metrics before and after.

    Args:
        chosen: The post-processing kept.
        baseline: The contract's post-processing before tuning (brain mask only, normally).
        candidates: Every candidate, in the order tried.
        per_case: One row per case: case id, then Dice/HD95 per region for the baseline and the
            choice (`baseline_Dice_WT`, ..., `chosen_HD95_ET`) and the ET voxel counts.
    """

    chosen: PostProcessing
    baseline: PostProcessing
    candidates: list[Candidate]
    per_case: list[dict]

    def to_json(self) -> dict:
        return {
            "chosen": self.chosen.to_json(),
            "chosen_description": self.chosen.describe(),
            "baseline": self.baseline.to_json(),
            "rule": "keep a candidate only when no region's mean validation Dice drops; highest mean Dice wins, "
                    "a stronger step only when it scores higher (ties keep the weaker)",
            "candidates": [{**c.postprocessing.to_json(), **{f"mean_Dice_{r}": d for r, d in c.mean_dice.items()}}
                           for c in self.candidates],
            "per_case": self.per_case,
        }


def mean_dice(labels: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean Dice per region (BraTS: 1 when both masks are empty) of internal label maps against references.

    Example:
        >>> mean_dice([np.array([0, 1, 3])], [np.array([0, 1, 1])])
        {'WT': 1.0, 'TC': 1.0, 'ET': 0.0}
    """
    scores = {region: [] for region in REGIONS}
    for predicted, reference in zip(labels, references):
        predicted_masks, reference_masks = region_masks(predicted), region_masks(reference)
        for region in REGIONS:
            scores[region].append(dice(predicted_masks[region], reference_masks[region]))
    return {region: float(np.mean(values)) for region, values in scores.items()}


def _choose(options: list[PostProcessing], raw: Sequence[np.ndarray], references: Sequence[np.ndarray],
            reference_mean: dict[str, float], tried: list[Candidate]) -> PostProcessing:
    """The admissible option with the best mean Dice; `options` go from weakest to strongest, ties keep the weaker."""
    best: Candidate | None = None
    for option in options:
        candidate = Candidate(option, mean_dice([postprocess(r, None, option) for r in raw], references))
        tried.append(candidate)
        admissible = all(candidate.mean_dice[r] >= reference_mean[r] - TOLERANCE for r in REGIONS)
        if admissible and (best is None or candidate.overall > best.overall + TOLERANCE):
            best = candidate
    return best.postprocessing if best else options[0]


def choose_postprocessing(
    cases: Sequence[PreprocessedCase],
    segment_raw: Callable[[PreprocessedCase], np.ndarray],
    baseline: PostProcessing | None = None,
    component_candidates: Sequence[int] = COMPONENT_CANDIDATES,
    et_candidates: Sequence[int] = ET_CANDIDATES,
) -> TuningResult:
    """Chooses the post-processing on labelled validation cases.

    Args:
        cases: Preprocessed validation cases with labels (cropped grid).
        segment_raw: Case -> internal labels on the cropped grid after the target and the
            baseline's brain mask, before any other step (e.g. the window and `finish_segmentation`
            with `baseline`).
        baseline: The post-processing the raw labels already had (its brain-mask setting is kept;
            default: the brain mask alone).
        component_candidates: Minimum tumor component sizes to try (0: none).
        et_candidates: ET voxel thresholds to try (0: none).

    Example:
        >>> result = choose_postprocessing(val_cases, raw_labels_of)  # doctest: +SKIP
        >>> result.chosen.describe()  # doctest: +SKIP
        'brain mask; ET below 500 voxels -> necrosis'
    """
    baseline = baseline or PostProcessing()
    labelled = [case for case in cases if case.label is not None]
    if not labelled:
        raise ValueError("choosing post-processing needs validation cases with reference labels; none given")
    raw = [np.asarray(segment_raw(case), np.uint8) for case in labelled]
    references = [case.label for case in labelled]
    plain = dataclasses.replace(baseline, min_component_voxels=0, min_et_voxels=0)
    baseline_mean = mean_dice(raw, references)
    tried: list[Candidate] = []
    components = _choose([dataclasses.replace(plain, brain_mask=False, min_component_voxels=n)
                          for n in sorted(set(component_candidates) | {0})], raw, references, baseline_mean, tried)
    chosen = _choose([dataclasses.replace(components, min_et_voxels=t) for t in sorted(set(et_candidates) | {0})],
                     raw, references, baseline_mean, tried)
    chosen = dataclasses.replace(chosen, brain_mask=baseline.brain_mask)
    per_case = []
    for case, labels, reference in zip(labelled, raw, references):
        after = postprocess(labels, None, dataclasses.replace(chosen, brain_mask=False))
        row = {"case_id": case.meta.case_id, "et_voxels_reference": int((reference == 3).sum()),
               "et_voxels_baseline": int((labels == 3).sum()), "et_voxels_chosen": int((after == 3).sum())}
        for name, predicted in (("baseline", labels), ("chosen", after)):
            metrics = case_metrics(predicted, reference, case.meta.spacing)
            row |= {f"{name}_{column}": round(value, 6) for column, value in metrics.items()}
        per_case.append(row)
    return TuningResult(chosen, baseline, tried, per_case)


def tune_contract(contract: SegmentationContract, result: TuningResult, description: str) -> SegmentationContract:
    """The contract with the chosen post-processing, saying how it was chosen."""
    return contract.replace(postprocessing=result.chosen, chosen_by=description)
