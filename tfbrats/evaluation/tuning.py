"""Post-processing chosen on validation cases, the nnU-Net way: keep a step only where it measurably helps.

Every validation case of a run is segmented once as a whole volume with the model's own window;
the candidates then act on those labels alone (no network call), in the order `postprocess`
applies them, each step chosen with the ones before it fixed:

1. removal of tumor components smaller than N voxels (`COMPONENT_CANDIDATES`);
2. for a label set with the resection cavity (BraTS 2024/2025), relabelling of cavity components
   smaller than N voxels as the class around them (`CAVITY_CANDIDATES`,
   `tfbrats.contract.relabel_dust`; a speck in the background becomes background);
3. relabelling of enhancing-tumor components smaller than N voxels ("dust") as the class around
   them (`DUST_CANDIDATES`, `tfbrats.contract.relabel_dust`);
4. relabelling of all enhancing tumor as necrosis in a case with fewer than T voxels of it
   (`ET_CANDIDATES`).

A candidate is admissible when it lowers no region's mean validation Dice (the label set's
regions: WT, TC, ET, and RC for post-treatment data; with BraTS' empty-mask rule); among the
admissible ones the highest mean Dice over the regions wins. Component removal acts on resection
cavity components as on tumor ones (a cavity speck goes with the small components when that
lowers no region's mean Dice); the cavity step then judges cavity components alone.
Candidates tie when they score the same, which they do whenever no validation case has a
component (or an ET volume) between their thresholds; ties are broken by what each step risks on
a new case:

- Component removal and the ET threshold keep the weaker step. Validation cases say nothing about
  the volumes between two tied thresholds, and a stronger one there can erase a case's whole
  lesion (an ET threshold of 500 voxels chosen over an equal-scoring 200 turned a held-out case's
  416-voxel enhancing tumor into necrosis: ET Dice 0).
- The dust step takes the strongest candidate that lowers no region's mean Dice below the best
  one's, up to its tie ceiling. BraTS scores ET asymmetrically: a single stray ET voxel on a case
  without enhancing tumor makes its ET Dice 0 (HD95 373.13), and relabelling the dust makes it 1;
  on a case with real ET the step relabels only components below the threshold and keeps every
  larger one, so it costs at most the voxels of those small components, unless a case's whole
  enhancing tumor is that small. Pre-treatment enhancing tumors are hundreds to thousands of
  voxels, but a residual nodule after resection can be smaller than 100 (in the synthetic
  post-treatment data, tuned to 100 on a tie, the step erased the whole enhancing tumor of two
  held-out cases: 98 and 105 voxels, predicted as 81 and 91). So the validation references set
  the ceiling (`tie_ceiling`): a tie takes no threshold above half the smallest enhancing tumor
  of a validation case that has one (half, because a prediction can be smaller than its
  reference); a candidate above it is kept only when it scores strictly better.
- The cavity step takes the strongest candidate too, for the same asymmetric reason and under
  the same ceiling (half the smallest cavity of a validation case): a pre-treatment case has no
  cavity, and BraTS scores a single predicted cavity voxel there as RC Dice 0 (HD95 373.13),
  while a real cavity is one component of hundreds to thousands of voxels, which the step keeps.
  Its candidates are capped at `MAX_CAVITY_DUST` (100 voxels).

The result records its evidence (`Evidence`): how many validation cases, how many of them without
enhancing tumor and how many of those the network gave stray ET; for a label set with the cavity,
also how many have no cavity (pre-treatment cases) and how many of those the network gave stray
cavity voxels. With few cases, or none without enhancing tumor (or cavity), the ET (or cavity)
steps rest on ties rather than measurements, and the evidence says so.
Thresholds count voxels; BraTS data are resampled to 1 mm, so they are mm^3 there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from tfbrats.contract import PostProcessing, SegmentationContract, postprocess
from tfbrats.data import PreprocessedCase
from tfbrats.evaluation.metrics import case_metrics, dice
from tfbrats.labels import BRATS, ET_CLASS, RC_CLASS, LabelSet, region_masks

COMPONENT_CANDIDATES = (0, 10, 50, 100, 200)
DUST_CANDIDATES = (0, 10, 20, 50, 100)
CAVITY_CANDIDATES = (0, 10, 20, 50, 100)
# The largest cavity-dust threshold tried: ties take the strongest candidate, and a real resection
# cavity is one component of hundreds to thousands of voxels.
MAX_CAVITY_DUST = 100
ET_CANDIDATES = (0, 50, 100, 200, 500, 750, 1000)
# A candidate "does not lower" a mean when it loses less than this (float noise only).
TOLERANCE = 1e-9
# Below this many validation cases one case moves a region's mean Dice by more than 0.1.
FEW_CASES = 10


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One post-processing tried on the validation cases, with its mean Dice per region."""

    postprocessing: PostProcessing
    mean_dice: dict[str, float]

    @property
    def overall(self) -> float:
        return float(np.mean(list(self.mean_dice.values())))


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a post-processing choice rests on.

    Args:
        cases: Labelled validation cases.
        cases_without_et: Those whose reference has no enhancing tumor.
        cases_without_et_given_et: Those of them where the network (before any ET step) predicted ET.
        cases_without_rc: Those whose reference has no resection cavity (pre-treatment cases);
            None for a label set without the cavity.
        cases_without_rc_given_rc: Those of them where the network (before any step) predicted
            cavity voxels; None for a label set without the cavity.

    Example:
        >>> Evidence(cases=3, cases_without_et=0, cases_without_et_given_et=0).warnings()[0][:60]
        'no validation case without enhancing tumor: the ET steps wer'
    """

    cases: int
    cases_without_et: int
    cases_without_et_given_et: int
    cases_without_rc: int | None = None
    cases_without_rc_given_rc: int | None = None

    def warnings(self) -> list[str]:
        """Plain statements of what the evidence cannot show (empty when it is enough)."""
        found = []
        if not self.cases_without_et:
            found.append("no validation case without enhancing tumor: the ET steps were not measured on the "
                         "error they exist for (stray ET on such a case scores ET Dice 0, HD95 373.13); their "
                         "choice rests on the cases with enhancing tumor and on the tie rules")
        elif not self.cases_without_et_given_et:
            found.append(f"the network gave none of the {self.cases_without_et} validation cases without enhancing "
                         "tumor any ET: the ET steps' benefit was not measured; their choice rests on the cases with "
                         "enhancing tumor and on the tie rules")
        if self.cases_without_rc == 0:
            found.append("no validation case without a resection cavity: the cavity step was not measured on the "
                         "error it exists for (a stray cavity voxel on a pre-treatment case scores RC Dice 0, HD95 "
                         "373.13); its choice rests on the cases with a cavity and on the tie rule")
        elif self.cases_without_rc and not self.cases_without_rc_given_rc:
            found.append(f"the network gave none of the {self.cases_without_rc} validation cases without a resection "
                         "cavity any cavity voxel: the cavity step's benefit was not measured; its choice rests on "
                         "the cases with a cavity and on the tie rule")
        if self.cases < FEW_CASES:
            found.append(f"only {self.cases} validation cases: one case moves a region's mean Dice by "
                         f"{1 / self.cases:.2f} (tune on more cases, e.g. every fold's validation predictions)")
        return found

    def describe(self) -> str:
        """One line: the counts.

        Example:
            >>> Evidence(4, 1, 1).describe()
            '4 cases, 1 without enhancing tumor (1 given stray ET)'
            >>> Evidence(4, 1, 1, 2, 1).describe()
            '4 cases, 1 without enhancing tumor (1 given stray ET), 2 without a resection cavity (1 given stray cavity)'
        """
        cavity = (f", {self.cases_without_rc} without a resection cavity ({self.cases_without_rc_given_rc} given "
                  "stray cavity)" if self.cases_without_rc is not None else "")
        return (f"{self.cases} cases, {self.cases_without_et} without enhancing tumor "
                f"({self.cases_without_et_given_et} given stray ET){cavity}")

    def to_json(self) -> dict:
        """The counts (the cavity's only for a label set with the cavity) and the warnings."""
        counts = {name: value for name, value in dataclasses.asdict(self).items() if value is not None}
        return {**counts, "warnings": self.warnings()}


@dataclasses.dataclass
class TuningResult:
    """The chosen post-processing, every candidate tried, per-case metrics before and after, the evidence.

    Args:
        chosen: The post-processing kept.
        baseline: The contract's post-processing before tuning (brain mask only, normally).
        candidates: Every candidate, in the order tried.
        per_case: One row per case: case id, the ET voxel counts (and, with the cavity, the RC
            voxel counts: `rc_voxels_reference`, `rc_voxels_baseline`, `rc_voxels_chosen`), then
            Dice/HD95 per region for the baseline and the choice (`baseline_Dice_WT`, ...,
            `chosen_HD95_ET`).
        evidence: How many cases, and how many without enhancing tumor (or cavity), the choice rests on.
        label_set: The label set whose regions were scored.
        tie_ceilings: Per dust step (`min_et_component_voxels`, `min_rc_component_voxels`), the
            largest threshold a tie could take (`tie_ceiling`; None: no validation case has the class).
    """

    chosen: PostProcessing
    baseline: PostProcessing
    candidates: list[Candidate]
    per_case: list[dict]
    evidence: Evidence
    label_set: LabelSet = BRATS
    tie_ceilings: dict[str, int | None] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        cavity = RC_CLASS in self.label_set.labels
        return {
            "chosen": self.chosen.to_json(),
            "chosen_description": self.chosen.describe(),
            "baseline": self.baseline.to_json(),
            "evidence": self.evidence.to_json(),
            "rule": "keep a candidate only when no region's mean validation Dice drops; highest mean Dice wins; on a "
                    "tie, component removal and the ET threshold keep the weaker step, the ET dust step"
                    f"{' and the cavity step' if cavity else ''} the strongest that lowers no region's mean Dice "
                    "below the best candidate's, up to half the smallest enhancing tumor"
                    f"{' (cavity)' if cavity else ''} of a validation case",
            "tie_ceilings": self.tie_ceilings,
            "candidates": [{**c.postprocessing.to_json(),
                            **({"min_rc_component_voxels": c.postprocessing.min_rc_component_voxels} if cavity else {}),
                            **{f"mean_Dice_{r}": d for r, d in c.mean_dice.items()}}
                           for c in self.candidates],
            "per_case": self.per_case,
        }


def mean_dice(labels: Sequence[np.ndarray], references: Sequence[np.ndarray],
              label_set: LabelSet = BRATS) -> dict[str, float]:
    """Mean Dice per region of the label set (BraTS: 1 when both masks are empty) of internal label maps.

    Example:
        >>> mean_dice([np.array([0, 1, 3])], [np.array([0, 1, 1])])
        {'WT': 1.0, 'TC': 1.0, 'ET': 0.0}
    """
    scores = {region: [] for region in label_set.regions}
    for predicted, reference in zip(labels, references):
        predicted_masks = region_masks(predicted, label_set.regions)
        reference_masks = region_masks(reference, label_set.regions)
        for region in label_set.regions:
            scores[region].append(dice(predicted_masks[region], reference_masks[region]))
    return {region: float(np.mean(values)) for region, values in scores.items()}


def _not_lower(candidate: Candidate, reference: dict[str, float]) -> bool:
    return all(candidate.mean_dice[r] >= reference[r] - TOLERANCE for r in reference)


def _choose(options: list[PostProcessing], raw: Sequence[np.ndarray], references: Sequence[np.ndarray],
            reference_mean: dict[str, float], tried: list[Candidate], strongest_on_tie: int | None = None,
            label_set: LabelSet = BRATS) -> PostProcessing:
    """The admissible option with the best mean Dice; `options` go from weakest to strongest.

    Ties keep the weaker option, or, with `strongest_on_tie` (an index into `options`), the
    strongest admissible option up to that one that lowers no region's mean Dice below the best one's.
    """
    admissible: list[Candidate] = []
    for option in options:
        processed = [postprocess(r, None, option, allowed=label_set.labels) for r in raw]
        candidate = Candidate(option, mean_dice(processed, references, label_set))
        tried.append(candidate)
        if _not_lower(candidate, reference_mean):
            admissible.append(candidate)
    if not admissible:
        return options[0]
    best = admissible[0]
    for candidate in admissible[1:]:
        if candidate.overall > best.overall + TOLERANCE:
            best = candidate
    if strongest_on_tie is not None:
        tied = [candidate for candidate in admissible if _not_lower(candidate, best.mean_dice)
                and options.index(candidate.postprocessing) <= strongest_on_tie]
        if tied and options.index(tied[-1].postprocessing) > options.index(best.postprocessing):
            best = tied[-1]
    return best.postprocessing


def tie_ceiling(references: Sequence[np.ndarray], label: int) -> int | None:
    """The largest dust threshold a tie may take for class `label`: half its smallest volume in a case.

    Cases without the class do not count; None when no case has it (no limit beyond the candidates).

    Example:
        >>> tie_ceiling([np.array([3] * 98 + [1]), np.array([0, 1]), np.array([3] * 700)], 3)
        49
        >>> tie_ceiling([np.array([0, 1])], 3) is None
        True
    """
    volumes = [n for n in (int(np.count_nonzero(r == label)) for r in references) if n]
    return min(volumes) // 2 if volumes else None


def choose_postprocessing(
    cases: Sequence[PreprocessedCase],
    segment_raw: Callable[[PreprocessedCase], np.ndarray],
    baseline: PostProcessing | None = None,
    component_candidates: Sequence[int] = COMPONENT_CANDIDATES,
    et_candidates: Sequence[int] = ET_CANDIDATES,
    dust_candidates: Sequence[int] = DUST_CANDIDATES,
    label_set: LabelSet = BRATS,
    cavity_candidates: Sequence[int] = CAVITY_CANDIDATES,
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
        dust_candidates: Minimum ET component sizes to try (0: none).
        label_set: The model's label set: its labels are allowed, its regions scored.
        cavity_candidates: Minimum resection-cavity component sizes to try (0: none; at most
            `MAX_CAVITY_DUST`), for a label set with the cavity only.

    Raises:
        ValueError: No labelled case, or a cavity candidate above `MAX_CAVITY_DUST`.

    Example:
        >>> import tempfile
        >>> from tfbrats.data import find_cases, load_case
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> cases = [load_case(case) for case in find_cases(tmp.name).cases]
        >>> def raw_labels_of(case):  # a network that is right but for one stray ET voxel in a corner
        ...     labels = case.label.copy()
        ...     labels[0, 0, 0] = 3
        ...     return labels
        >>> result = choose_postprocessing(cases, raw_labels_of)
        >>> result.chosen.describe()
        'brain mask; tumor components below 10 voxels removed; ET components below 20 voxels -> surrounding class'
        >>> result.evidence.describe()
        '2 cases, 0 without enhancing tumor (0 given stray ET)'
        >>> tmp.cleanup()
    """
    baseline = baseline or PostProcessing()
    if max(cavity_candidates, default=0) > MAX_CAVITY_DUST:
        raise ValueError(f"cavity candidates {list(cavity_candidates)}: at most {MAX_CAVITY_DUST} voxels (its ties "
                         "take the strongest candidate, and a larger one could erase a real cavity)")
    labelled = [case for case in cases if case.label is not None]
    if not labelled:
        raise ValueError("choosing post-processing needs validation cases with reference labels; none given")
    raw = [np.asarray(segment_raw(case), np.uint8) for case in labelled]
    references = [case.label for case in labelled]
    baseline_mean = mean_dice(raw, references, label_set)
    tried: list[Candidate] = []

    ceilings: dict[str, int | None] = {}

    def step(name: str, values: Sequence[int], after: PostProcessing, dust_of: int | None = None):
        """Chooses `name` among `values`; a dust step (`dust_of`: its class) breaks ties upwards."""
        thresholds = sorted(set(values) | {0})
        options = [dataclasses.replace(after, **{name: n}) for n in thresholds]
        strongest = None
        if dust_of is not None:
            ceilings[name] = ceiling = tie_ceiling(references, dust_of)
            strongest = max(i for i, n in enumerate(thresholds) if ceiling is None or n <= ceiling)
        return _choose(options, raw, references, baseline_mean, tried, strongest, label_set)

    chosen = step("min_component_voxels", component_candidates, PostProcessing(brain_mask=False))
    if RC_CLASS in label_set.labels:
        chosen = step("min_rc_component_voxels", cavity_candidates, chosen, dust_of=RC_CLASS)
    chosen = step("min_et_component_voxels", dust_candidates, chosen, dust_of=ET_CLASS)
    chosen = step("min_et_voxels", et_candidates, chosen)
    chosen = dataclasses.replace(chosen, brain_mask=baseline.brain_mask)
    per_case = _per_case(labelled, raw, chosen, label_set)
    return TuningResult(chosen, baseline, tried, per_case, _evidence(per_case, label_set), label_set, ceilings)


def _per_case(cases: Sequence[PreprocessedCase], raw: Sequence[np.ndarray], chosen: PostProcessing,
              label_set: LabelSet) -> list[dict]:
    """One row per case: the ET (and cavity) voxel counts, Dice/HD95 per region before and after `chosen`."""
    counted = ((ET_CLASS, "et"), (RC_CLASS, "rc")) if RC_CLASS in label_set.labels else ((ET_CLASS, "et"),)
    rows = []
    for case, labels in zip(cases, raw):
        reference = case.label
        after = postprocess(labels, None, dataclasses.replace(chosen, brain_mask=False), allowed=label_set.labels)
        row = {"case_id": case.meta.case_id}
        for value, name in counted:
            row |= {f"{name}_voxels_reference": int((reference == value).sum()),
                    f"{name}_voxels_baseline": int((labels == value).sum()),
                    f"{name}_voxels_chosen": int((after == value).sum())}
        for name, predicted in (("baseline", labels), ("chosen", after)):
            metrics = case_metrics(predicted, reference, case.meta.spacing, label_set=label_set)
            row |= {f"{name}_{column}": round(value, 6) for column, value in metrics.items()}
        rows.append(row)
    return rows


def _evidence(per_case: Sequence[dict], label_set: LabelSet) -> Evidence:
    """The counts of `Evidence` from the per-case rows."""
    without_et = [row for row in per_case if not row["et_voxels_reference"]]
    counts = [len(per_case), len(without_et), sum(1 for row in without_et if row["et_voxels_baseline"])]
    if RC_CLASS in label_set.labels:
        without_rc = [row for row in per_case if not row["rc_voxels_reference"]]
        counts += [len(without_rc), sum(1 for row in without_rc if row["rc_voxels_baseline"])]
    return Evidence(*counts)


def tune_contract(contract: SegmentationContract, result: TuningResult, description: str) -> SegmentationContract:
    """The contract with the chosen post-processing, saying how it was chosen."""
    return contract.replace(postprocessing=result.chosen, chosen_by=description)
