"""The segmentation contract: everything that turns a network's outputs into a patient's label map.

A contract says which target the outputs are (`tfbrats.labels`), which input channels in which
order, how a volume is tiled (`Window`), which post-processing follows (`PostProcessing`) and
which label values are written. Training writes it into the model file (the AlbuNet's
``segmentation`` config, so a `.keras` alone is enough), the run folder keeps the tuned choice,
and every door applies it through the same code: `tfbrats.predict`, the Python API, the exported
SavedModel and its clients. `finish_segmentation` is that code for everything after the window.

Values enter the contract through two functions, and nothing becomes a label map unchecked:
`check_probabilities` (finite, within [0, 1], one per output; what `finish_segmentation` applies
first) and `check_labels` (whole numbers among the internal labels; what `postprocess` applies
first, so a server's labels are checked as the library's are). Either raises `OutputError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfbrats.conventions import DEFAULT_CHANNELS
from tfbrats.files import atomic_path
from tfbrats.labels import BRATS, ET_CLASS, INTERNAL_LABELS, RC_CLASS, Target, get_target, target_from_json
from tfbrats.precision import PRECISIONS

CONTRACT_VERSION = 1
# A contract that relabels enhancing-tumor dust is written as version 2, so a tfbrats that does
# not know the step refuses the model instead of segmenting without it; this one reads both.
CONTRACT_VERSION_DUST = 2
# A contract whose target has another label set than BraTS' four classes (the resection cavity) is
# version 3, so a tfbrats that knows only four classes refuses it; contracts without one keep 1 or 2.
CONTRACT_VERSION_LABEL_SET = 3
# A contract that relabels resection-cavity dust is version 4, so a tfbrats that reads post-treatment
# models but not that step refuses the model instead of segmenting without it.
CONTRACT_VERSION_CAVITY_DUST = 4
CONTRACT_VERSIONS = (CONTRACT_VERSION, CONTRACT_VERSION_DUST, CONTRACT_VERSION_LABEL_SET,
                     CONTRACT_VERSION_CAVITY_DUST)
# The paper's windows: the training patch, steps 24 in depth and 32 in-plane.
DEFAULT_PATCH_3D = (24, 128, 128)
DEFAULT_PATCH_2D = (1, 128, 128)
DEFAULT_STEPS = (24, 32, 32)
BLEND_MODES = ("mean", "gaussian")  # how overlapping windows are averaged (`tfbrats.inference.sliding_window`)
NECROSIS_CLASS = 1
# How far a probability may stray outside [0, 1]: float32 rounding in window blending, half-precision heads.
PROBABILITY_TOLERANCE = 1e-3


class ContractError(ValueError):
    """A model, run folder or export whose segmentation contract is missing or contradicts another."""


class OutputError(ValueError):
    """Probabilities or labels that cannot become a segmentation: not finite, outside [0, 1], not a label."""


def _triple(values, what: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 3 or min(values) < 1:
        raise ContractError(f"{what} must be three positive sizes (D, H, W); got {values}")
    return values


@dataclasses.dataclass(frozen=True)
class Window:
    """How a volume is tiled: window size, steps, batch, blending, test-time mirroring.

    Args:
        patch_size: The window (D, H, W), normally the training patch; None is a single pass
            over the whole (padded) volume.
        steps: Distance between window starts (D, H, W).
        batch_size: Windows per network call.
        blend: "mean" (every window counts the same) or "gaussian" (window centres count more).
        mirror_tta: Average the predictions of the 8 mirrorings of the volume (8x the cost).
        precision: The network's compute precision ("float32", "mixed_bfloat16", "mixed_float16";
            `tfbrats.precision.PRECISIONS`); the probabilities are float32 either way.

    Example:
        >>> Window(patch_size=(8, 64, 64), steps=(8, 32, 32)).to_json()["patch_size"]
        [8, 64, 64]
    """

    patch_size: tuple[int, int, int] | None = DEFAULT_PATCH_3D
    steps: tuple[int, int, int] = DEFAULT_STEPS
    batch_size: int = 2
    blend: str = "mean"
    mirror_tta: bool = False
    precision: str = "float32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ContractError(f"window precision must be one of {PRECISIONS}; got {self.precision!r}")
        if self.patch_size is not None:
            object.__setattr__(self, "patch_size", _triple(self.patch_size, "window patch_size"))
        object.__setattr__(self, "steps", _triple(self.steps, "window steps"))
        if self.blend not in BLEND_MODES:
            raise ContractError(f"window blend must be one of {BLEND_MODES}; got {self.blend!r}")
        if self.batch_size < 1:
            raise ContractError(f"window batch_size must be >= 1; got {self.batch_size}")

    @classmethod
    def for_patch(cls, patch_size: tuple[int, int, int] | None, steps: tuple[int, int, int] = DEFAULT_STEPS,
                  **options) -> Window:
        """A window of `patch_size` whose `steps` are clipped to it (windows then overlap or touch).

        Example:
            >>> Window.for_patch((8, 64, 64)).steps
            (8, 32, 32)
        """
        if patch_size is not None:
            steps = tuple(min(int(s), int(p)) for s, p in zip(steps, patch_size))
        return cls(patch_size=patch_size, steps=steps, **options)

    def to_json(self) -> dict[str, Any]:
        values = {"patch_size": list(self.patch_size) if self.patch_size else None, "steps": list(self.steps),
                  "batch_size": self.batch_size, "blend": self.blend, "mirror_tta": self.mirror_tta}
        if self.precision != "float32":  # a float32 window reads as it did before precision was recorded
            values["precision"] = self.precision
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Window:
        return cls(patch_size=tuple(values["patch_size"]) if values.get("patch_size") else None,
                   steps=tuple(values.get("steps", DEFAULT_STEPS)), batch_size=int(values.get("batch_size", 2)),
                   blend=values.get("blend", "mean"), mirror_tta=bool(values.get("mirror_tta", False)),
                   precision=values.get("precision", "float32"))


@dataclasses.dataclass(frozen=True)
class PostProcessing:
    """What happens to the labels after the network.

    `postprocess` applies the steps in this order: the brain mask, removal of small tumor
    components, relabelling of resection-cavity dust, relabelling of enhancing-tumor dust, then
    the whole-case ET threshold (the fields keep the order in which they were added, so
    positional construction stays valid).

    Args:
        brain_mask: Voxels that are zero in every input channel (outside the brain) are background.
        min_component_voxels: Connected tumor components (26-connectivity, whole tumor) smaller
            than this are removed (set to background); 0 keeps all.
        min_et_voxels: When a case has fewer enhancing-tumor voxels than this in all, they become
            necrosis (BraTS scores a stray ET on a case without ET as Dice 0); 0 keeps them.
        min_et_component_voxels: Enhancing-tumor components (26-connectivity) smaller than this
            take the class of their surroundings (`relabel_dust`); 0 keeps them.
        min_rc_component_voxels: Resection-cavity components (26-connectivity) smaller than this
            take the class of their surroundings (`relabel_dust`; a speck in the background becomes
            background); 0 keeps them. Only for a label set with the cavity.

    Example:
        >>> PostProcessing(min_et_voxels=200).describe()
        'brain mask; ET below 200 voxels -> necrosis'
    """

    brain_mask: bool = True
    min_component_voxels: int = 0
    min_et_voxels: int = 0
    min_et_component_voxels: int = 0
    min_rc_component_voxels: int = 0

    def __post_init__(self):
        for name in ("min_component_voxels", "min_et_voxels", "min_et_component_voxels", "min_rc_component_voxels"):
            if getattr(self, name) < 0:
                raise ContractError(f"post-processing {name} must be >= 0; got {getattr(self, name)}")

    def describe(self) -> str:
        """A short human-readable summary, steps in the order they run (what the demo and the sidecar print)."""
        parts = ["brain mask"] if self.brain_mask else []
        if self.min_component_voxels:
            parts.append(f"tumor components below {self.min_component_voxels} voxels removed")
        if self.min_rc_component_voxels:
            parts.append(f"RC components below {self.min_rc_component_voxels} voxels -> surrounding class")
        if self.min_et_component_voxels:
            parts.append(f"ET components below {self.min_et_component_voxels} voxels -> surrounding class")
        if self.min_et_voxels:
            parts.append(f"ET below {self.min_et_voxels} voxels -> necrosis")
        return "; ".join(parts) or "none"

    def to_json(self) -> dict[str, Any]:
        """The fields as a dict; `min_rc_component_voxels` only when set, so a contract without it reads as before.

        Example:
            >>> PostProcessing(min_et_voxels=200).to_json()
            {'brain_mask': True, 'min_component_voxels': 0, 'min_et_voxels': 200, 'min_et_component_voxels': 0}
            >>> PostProcessing.from_json(PostProcessing(min_rc_component_voxels=50).to_json()).min_rc_component_voxels
            50
        """
        values = dataclasses.asdict(self)
        if not self.min_rc_component_voxels:
            del values["min_rc_component_voxels"]
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> PostProcessing:
        return cls(brain_mask=bool(values.get("brain_mask", True)),
                   min_component_voxels=int(values.get("min_component_voxels", 0)),
                   min_et_voxels=int(values.get("min_et_voxels", 0)),
                   min_et_component_voxels=int(values.get("min_et_component_voxels", 0)),
                   min_rc_component_voxels=int(values.get("min_rc_component_voxels", 0)))

    def to_integers(self) -> list[int]:
        """The steps as integers in field order (how an exported graph hands them to its client).

        Four integers, and a fifth (`min_rc_component_voxels`) only when the cavity step is on: an
        export without it reads as before in an older client, and one with it is refused there
        (an older client reads 3 or 4 integers) rather than segmented without the step.

        Example:
            >>> PostProcessing(False, 10, 200, 50).to_integers()
            [0, 10, 200, 50]
            >>> PostProcessing(min_rc_component_voxels=20).to_integers()
            [1, 0, 0, 0, 20]
            >>> PostProcessing.from_integers([0, 0, 0, 0, 20]).describe()
            'RC components below 20 voxels -> surrounding class'
        """
        integers = [int(self.brain_mask), self.min_component_voxels, self.min_et_voxels, self.min_et_component_voxels]
        return integers + [self.min_rc_component_voxels] if self.min_rc_component_voxels else integers

    @classmethod
    def from_integers(cls, values: Iterable[int]) -> PostProcessing:
        """The inverse of `to_integers`; three integers (exports without the dust steps) are read too.

        Raises:
            ContractError: Not 3, 4 or 5 whole, non-negative numbers with brain_mask 0 or 1.
        """
        numbers = np.ravel(np.asarray(values, dtype=object))
        whole = [v for v in numbers.tolist() if isinstance(v, (int, float, np.number)) and np.isfinite(v)
                 and v == int(v) and v >= 0]
        if len(numbers) not in (3, 4, 5) or len(whole) != len(numbers) or whole[0] > 1:
            raise ContractError(f"post-processing steps are 3, 4 or 5 whole numbers (brain_mask 0 or 1, "
                                f"min_component_voxels, min_et_voxels[, min_et_component_voxels[, "
                                f"min_rc_component_voxels]]); got {numbers.tolist()}")
        integers = [int(v) for v in whole]
        return cls(bool(integers[0]), *integers[1:])

    def split(self) -> tuple[PostProcessing, PostProcessing]:
        """The steps Keras ops can run (`postprocess_without_components`) and the steps left after them.

        The first runs the brain mask and, unless a step needs connected components (removing
        small tumor components, relabelling cavity or ET dust: no Keras or TensorFlow op finds components),
        the ET threshold; whatever follows the first step it cannot do is left to
        `tfbrats.contract.postprocess` (an exported `segment` signature returns it as
        `to_integers`; its client reads it with `from_integers`).

        Example:
            >>> graph, client = PostProcessing(min_component_voxels=10, min_et_voxels=200).split()
            >>> graph.describe(), client.describe()
            ('brain mask', 'tumor components below 10 voxels removed; ET below 200 voxels -> necrosis')
        """
        if self.needs_components:
            return PostProcessing(brain_mask=self.brain_mask), dataclasses.replace(self, brain_mask=False)
        return self, PostProcessing(brain_mask=False)

    @property
    def needs_components(self) -> bool:
        """Whether a step finds connected components (which only `postprocess`, in numpy, runs)."""
        return bool(self.min_component_voxels or self.min_rc_component_voxels or self.min_et_component_voxels)


@dataclasses.dataclass(frozen=True)
class SegmentationContract:
    """Target, channels, window, post-processing and written label values of a model.

    Args:
        target: What the network outputs (`tfbrats.labels.Target`).
        channels: The input channels in order (modality names as `tfbrats.data` uses them).
        window: The tiling.
        postprocessing: The post-processing.
        label_values: Value written for each internal class but background (``{1: 1, 2: 2, 3: 4}``
            writes BraTS 2020's values whatever the input; a target with the resection cavity
            needs class 4 too); None writes each input dataset's own values.
        chosen_by: How the post-processing was chosen (e.g. "validation: 4 cases, run runs/demo").
        inference_mode: How the window and precision were chosen, when `python -m tfbrats.tune`
            chose them (`tfbrats.inference.modes`): the mode, the reference, every mode's measured
            seconds and mean validation Dice, the refused ones and the machine; None otherwise.

    Example:
        >>> contract = SegmentationContract(get_target("regions"), window=Window(patch_size=(8, 64, 64)))
        >>> SegmentationContract.from_json(contract.to_json()) == contract
        True
    """

    target: Target = dataclasses.field(default_factory=lambda: get_target("classes"))
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    window: Window = dataclasses.field(default_factory=Window)
    postprocessing: PostProcessing = dataclasses.field(default_factory=PostProcessing)
    label_values: dict[int, int] | None = None
    chosen_by: str = "defaults"
    inference_mode: dict[str, Any] | None = None

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))
        if self.label_values is not None:
            values = {int(k): int(v) for k, v in self.label_values.items()}
            classes = list(range(1, max(self.target.label_set.num_classes, 4)))
            if sorted(values) != classes:
                raise ContractError(f"label_values must give a value for each class {classes} of the target's "
                                    f"label set {self.target.label_set.name}; got {values}")
            object.__setattr__(self, "label_values", values)
        cavity_dust = self.postprocessing.min_rc_component_voxels
        if cavity_dust and RC_CLASS not in self.target.labels:
            raise ContractError(f"post-processing min_rc_component_voxels={cavity_dust} relabels resection-cavity "
                                f"components, but the target's label set "
                                f"{self.target.label_set.name} has no cavity (labels {list(self.target.labels)}); "
                                "expected 0 for this model")

    def replace(self, **changes) -> SegmentationContract:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def own_window(self) -> Window:
        """The model's own window (its training patch), before a tuned inference mode replaced it.

        Example:
            >>> tuned = SegmentationContract(window=Window(patch_size=None), inference_mode={
            ...     "mode": "full_volume", "reference_window": Window.for_patch((8, 64, 64)).to_json()})
            >>> tuned.own_window.patch_size, SegmentationContract().own_window.patch_size
            ((8, 64, 64), (24, 128, 128))
        """
        if self.inference_mode:
            return Window.from_json(self.inference_mode["reference_window"])
        return self.window

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "target": self.target.to_json(),
            "channels": list(self.channels),
            "window": self.window.to_json(),
            "postprocessing": self.postprocessing.to_json(),
            "label_values": {str(k): v for k, v in self.label_values.items()} if self.label_values else None,
            "chosen_by": self.chosen_by,
        } | ({"inference_mode": self.inference_mode} if self.inference_mode else {})

    @property
    def version(self) -> int:
        """The oldest contract version that holds everything this contract says."""
        if self.postprocessing.min_rc_component_voxels:
            return CONTRACT_VERSION_CAVITY_DUST
        if self.target.label_set is not BRATS:
            return CONTRACT_VERSION_LABEL_SET
        return CONTRACT_VERSION_DUST if self.postprocessing.min_et_component_voxels else CONTRACT_VERSION

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> SegmentationContract:
        version = values.get("version")
        if version not in CONTRACT_VERSIONS:
            raise ContractError(f"segmentation contract version {version!r}; this tfbrats reads versions "
                                f"{list(CONTRACT_VERSIONS)}")
        return cls(
            target=target_from_json(values["target"]),
            channels=tuple(values["channels"]),
            window=Window.from_json(values["window"]),
            postprocessing=PostProcessing.from_json(values.get("postprocessing", {})),
            label_values=values.get("label_values"),
            chosen_by=values.get("chosen_by", "defaults"),
            inference_mode=values.get("inference_mode"),
        )


def save_model(model: Any, path: str | Path, contract: SegmentationContract | None = None) -> Path:
    """Writes a Keras model to a `.keras` file atomically, with `contract` as its ``segmentation`` config.

    The one writer of tfbrats' model files: a training run's best and final models
    (`tfbrats.training.run.Run.save_model`; the model carries the contract it was built with) and
    a model given another contract (`tfbrats.inference.model.save_with_contract`, e.g. the tuned
    post-processing). The file appears complete or not at all.

    Args:
        model: A tfbrats model (its ``segmentation`` attribute is what `get_config` records).
        path: The `.keras` file.
        contract: The contract to record; None keeps the one the model carries.

    Returns:
        The path written.
    """
    if contract is not None:
        model.segmentation = contract.to_json()
    with atomic_path(path) as temporary:
        model.save(temporary)
    return Path(path)


def brain_region(image: np.ndarray) -> np.ndarray:
    """Voxels that are non-zero in at least one channel of a (..., C) image (the brain after preprocessing).

    Example:
        >>> brain_region(np.array([[[0.0, 0.0], [0.0, 1.0]]])).tolist()
        [[False, True]]
    """
    return np.any(np.asarray(image) != 0, axis=-1)


def _ops():
    from keras import ops  # imported on first use: the contract's numpy readers need no Keras

    return ops


def mask_outside_brain(labels, image):
    """Labels set to background where every channel of `image` (..., C) is zero (Keras ops, also in graphs).

    The brain-mask step of `postprocess` and of an exported `segment` signature; `labels` keep their dtype.

    Example:
        >>> import keras
        >>> image = np.array([[[0.0, 0.0], [0.0, 1.0]]])
        >>> keras.ops.convert_to_numpy(mask_outside_brain(np.array([[2, 3]], np.uint8), image)).tolist()
        [[0, 3]]
    """
    ops = _ops()
    inside = ops.any(ops.not_equal(image, 0), axis=-1)
    return ops.where(inside, labels, ops.zeros_like(labels))


def remove_small_components(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """Sets connected tumor components (26-connected, any label > 0) smaller than `min_voxels` to 0.

    Example:
        >>> labels = np.zeros((1, 5, 5), np.uint8); labels[0, 0, 0] = 2; labels[0, 2:5, 2:5] = 1
        >>> int(remove_small_components(labels, 2).sum())
        9
    """
    if not min_voxels:
        return labels
    from scipy import ndimage

    components, count = ndimage.label(labels > 0, structure=np.ones((3,) * labels.ndim, bool))
    if not count:
        return labels
    sizes = np.bincount(components.ravel())
    small = sizes < min_voxels
    small[0] = False
    return np.where(small[components], np.uint8(0), labels).astype(labels.dtype)


def relabel_small_enhancing(labels, min_voxels: int):
    """Relabels all enhancing tumor (3) as necrosis (1) when a case has fewer than `min_voxels` of it (Keras ops).

    BraTS scores an ET prediction on a case without ET as Dice 0 and HD95 373.13, so a few stray
    ET voxels cost far more than missing a tiny enhancing region. The whole-case ET threshold of
    `postprocess` and of an exported `segment` signature; `labels` keep their dtype.

    Example:
        >>> import keras
        >>> keras.ops.convert_to_numpy(relabel_small_enhancing(np.array([0, 3, 3, 2], np.uint8), 3)).tolist()
        [0, 1, 1, 2]
    """
    if not min_voxels:
        return labels
    ops = _ops()
    enhancing = ops.equal(labels, ET_CLASS)
    count = ops.sum(ops.cast(enhancing, "int32"))
    relabel = ops.logical_and(ops.logical_and(count > 0, count < min_voxels), enhancing)
    return ops.where(relabel, ops.full_like(labels, NECROSIS_CLASS), labels)


def postprocess_without_components(labels, image, steps: PostProcessing):
    """The steps of `postprocess` that need no connected components, in Keras ops (also in graphs).

    The brain mask and the whole-case ET threshold, on labels of any integer dtype (kept);
    `PostProcessing.split` gives the steps this can run.

    Raises:
        ContractError: `steps` remove small components or relabel dust (no Keras op finds
            connected components; `tfbrats.contract.postprocess` runs them in numpy).

    Example:
        >>> import keras
        >>> labels = np.array([[[3, 3, 1]]], np.int32); image = np.array([[[[1.0], [1.0], [0.0]]]])
        >>> out = postprocess_without_components(labels, image, PostProcessing(min_et_voxels=5))
        >>> keras.ops.convert_to_numpy(out).tolist()
        [[[1, 1, 0]]]
    """
    if steps.needs_components:
        raise ContractError(f"steps on connected components have no Keras op ({steps.describe()}); "
                            "PostProcessing.split leaves them to tfbrats.contract.postprocess")
    if steps.brain_mask:
        labels = mask_outside_brain(labels, image)
    return relabel_small_enhancing(labels, steps.min_et_voxels)


def _case(case_id: str | None) -> str:
    return f"case {case_id}: " if case_id else ""


def _shown(values: np.ndarray, limit: int = 5) -> str:
    """Up to `limit` distinct values as a list (whole numbers without a decimal point)."""
    shown = [int(v) if np.isfinite(v) and v == int(v) else float(v) for v in values[:limit].tolist()]
    return f"{shown}{' ...' if len(values) > limit else ''}"


def check_probabilities(probabilities: np.ndarray, target: Target, image: np.ndarray | None = None,
                        case_id: str | None = None) -> np.ndarray:
    """`probabilities` (D, H, W, outputs) as float32, once they are finite values in [0, 1], one per output.

    A network with NaN weights gives NaN probabilities, which argmax or a threshold would turn into
    confident background; logits served as probabilities stray outside [0, 1]. Both are refused.

    Args:
        probabilities: The network's probabilities over a volume.
        target: The target they are (its number of outputs).
        image: The image (D, H, W, C) they were computed from, whose grid they must have; None
            skips that check.
        case_id: The case, named in the error.

    Raises:
        OutputError: A shape, dtype or value that cannot be the target's probabilities (a value
            may stray from [0, 1] by `PROBABILITY_TOLERANCE`).

    Example:
        >>> check_probabilities(np.array([[[[0.2, 0.8]]]]), get_target("classes", 2)).dtype
        dtype('float32')
        >>> nan = np.array([[[[np.nan, 0.8]]]])
        >>> check_probabilities(nan, get_target("classes", 2), case_id="c1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.contract.OutputError: case c1: the network's probabilities hold 1 NaN or infinite values of 2 ...
    """
    where = _case(case_id)
    values = np.asarray(probabilities)
    if values.dtype.kind not in "biuf" or values.ndim != 4 or values.shape[-1] != target.num_outputs:
        raise OutputError(f"{where}probabilities of shape {values.shape} and dtype {values.dtype}; expected "
                          f"numbers (D, H, W, {target.num_outputs}), one per output of the {target.name} target")
    if image is not None and values.shape[:3] != np.shape(image)[:3]:
        raise OutputError(f"{where}probabilities over a grid {values.shape[:3]} for an image of shape "
                          f"{np.shape(image)}; expected the image's grid {np.shape(image)[:3]}")
    finite = np.isfinite(values)
    if not finite.all():
        first = np.unravel_index(int(np.argmin(finite)), values.shape)
        raise OutputError(
            f"{where}the network's probabilities hold {values.size - np.count_nonzero(finite)} NaN or infinite "
            f"values of {values.size} (the first at index {tuple(int(i) for i in first)}: {values[first]}); "
            "expected finite probabilities in [0, 1]: check the model's weights and the input for NaN"
        )
    low, high = float(values.min()), float(values.max())
    if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
        outside = np.count_nonzero((values < -PROBABILITY_TOLERANCE) | (values > 1 + PROBABILITY_TOLERANCE))
        raise OutputError(
            f"{where}the network's probabilities range over [{low:.4g}, {high:.4g}] ({outside} values outside "
            f"[0, 1]); expected the {target.name} target's {target.activation} probabilities, not logits"
        )
    return values.astype(np.float32, copy=False)


def check_labels(labels: np.ndarray, allowed: Sequence[int] = INTERNAL_LABELS,
                 case_id: str | None = None) -> np.ndarray:
    """`labels` as uint8, once every value is one of `allowed` (a whole number: 3.7 or 300 is refused).

    Args:
        labels: Internal labels, of any numeric dtype (a server's answer may be float or int64).
        allowed: The labels that may occur (default: the internal classes 0..3).
        case_id: The case, named in the error.

    Raises:
        OutputError: A non-numeric array, or values outside `allowed`, which a cast to uint8 would
            wrap or truncate into a tumor class.

    Example:
        >>> check_labels(np.array([0.0, 3.0])).tolist()
        [0, 3]
        >>> check_labels(np.array([0, 3.7, 300]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.contract.OutputError: labels hold 2 voxels of values [3.7, 300], which are not labels [0, 1, 2, 3]...
    """
    where = _case(case_id)
    values = np.asarray(labels)
    if values.dtype.kind not in "biuf":
        raise OutputError(f"{where}labels of dtype {values.dtype}; expected whole numbers among {list(allowed)}")
    unknown = ~np.isin(values, np.asarray(allowed))
    if unknown.any():
        raise OutputError(f"{where}labels hold {np.count_nonzero(unknown)} voxels of values "
                          f"{_shown(np.unique(values[unknown]))}, which are not labels {list(allowed)}; "
                          "expected whole numbers among them")
    return values.astype(np.uint8)


def relabel_dust(labels: np.ndarray, label: int, min_voxels: int) -> np.ndarray:
    """Gives each component of class `label` smaller than `min_voxels` the class of its surroundings.

    The one mechanism behind the enhancing-tumor dust step (`label` 3) and the resection-cavity
    dust step (`label` 4) of `postprocess`. Components are 26-connected. A component's
    surroundings are the voxels of other classes 26-adjacent to it; it takes the class most of
    them have (a tie goes to the lower class value), so ET dust inside a non-enhancing core
    becomes necrosis, dust in edema becomes edema and an isolated speck (a stray cavity voxel on
    a case without a cavity) becomes background. Larger components, and the rest of the case,
    are unchanged. Each component is judged on the labels as given (two components of one class
    are never adjacent, so the order does not matter).

    Example:
        >>> labels = np.ones((1, 5, 5), np.uint8); labels[0, 2, 2] = 3; labels[0, :, 4] = 2
        >>> relabel_dust(labels, 3, 2)[0, 2].tolist()
        [1, 1, 1, 1, 2]
        >>> cavity = np.zeros((1, 5, 5), np.uint8); cavity[0, 0, 0] = 4; cavity[0, 2:5, 2:5] = 4
        >>> relabel_dust(cavity, 4, 2)[0].tolist()
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 4, 4, 4], [0, 0, 4, 4, 4], [0, 0, 4, 4, 4]]
    """
    if not min_voxels:
        return labels
    from scipy import ndimage

    members = labels == label
    structure = np.ones((3,) * labels.ndim, bool)
    components, count = ndimage.label(members, structure=structure)
    if not count:
        return labels
    sizes = np.bincount(components.ravel())
    boxes = ndimage.find_objects(components)
    result = labels.copy()
    for index in np.flatnonzero(sizes[1:] < min_voxels) + 1:
        around = tuple(slice(max(box.start - 1, 0), box.stop + 1) for box in boxes[index - 1])
        component = components[around] == index
        neighbours = ndimage.binary_dilation(component, structure) & ~members[around]
        result[around][component] = np.argmax(np.bincount(labels[around][neighbours], minlength=1))
    return result


def postprocess(labels: np.ndarray, image: np.ndarray | None, steps: PostProcessing,
                case_id: str | None = None, allowed: Sequence[int] = INTERNAL_LABELS) -> np.ndarray:
    """Applies `steps` to internal labels (D, H, W); `image` (D, H, W, C) is needed for the brain mask.

    The labels are checked first (`check_labels`): only `allowed` (the target's labels; default
    the four BraTS classes 0..3) go on. The order: brain mask, small components (any labelled
    component, a resection cavity too), resection-cavity dust, enhancing-tumor dust, whole-case ET
    threshold. Cavity dust goes before ET dust: a cavity speck inside enhancing tumor becomes
    enhancing tumor, which the ET dust step then judges with the rest.

    Raises:
        OutputError: Labels that are not internal classes, or not on the image's grid.

    Example:
        >>> labels = np.array([[[3, 3, 1]]], np.uint8); image = np.ones((1, 1, 3, 1))
        >>> postprocess(labels, image, PostProcessing(min_et_voxels=5)).tolist()
        [[[1, 1, 1]]]
    """
    labels = check_labels(labels, allowed, case_id=case_id)
    if steps.brain_mask:
        if image is None:
            raise ContractError("the brain-mask step needs the image (zero in every channel = outside the brain)")
        if labels.shape != np.shape(image)[:-1]:
            raise OutputError(f"{_case(case_id)}labels of shape {labels.shape} for an image of shape "
                              f"{np.shape(image)}; expected the image's grid {np.shape(image)[:-1]}")
        labels = _numpy(mask_outside_brain(labels, image))
    labels = remove_small_components(labels, steps.min_component_voxels)
    labels = relabel_dust(labels, RC_CLASS, steps.min_rc_component_voxels)
    labels = relabel_dust(labels, ET_CLASS, steps.min_et_component_voxels)
    return _numpy(relabel_small_enhancing(labels, steps.min_et_voxels))


def _numpy(labels) -> np.ndarray:
    """Labels from a Keras op as a uint8 numpy array (numpy input passes through)."""
    if isinstance(labels, np.ndarray):
        return labels.astype(np.uint8, copy=False)
    return np.asarray(_ops().convert_to_numpy(labels), dtype=np.uint8)


def finish_segmentation(probabilities: np.ndarray, image: np.ndarray | None,
                        contract: SegmentationContract, case_id: str | None = None) -> np.ndarray:
    """Probabilities (D, H, W, outputs) -> internal labels (D, H, W), as the contract says.

    The one function every door uses after the network: `check_probabilities`, the target's
    labels, then `postprocess`.

    Args:
        probabilities: The network's probabilities over the (cropped) volume.
        image: The preprocessed image (D, H, W, C), for the brain mask; None without one.
        contract: The contract whose target and post-processing apply.
        case_id: The case, named in errors.

    Raises:
        OutputError: Probabilities that are not finite, not in [0, 1] or not on the image's grid.

    Example:
        >>> p = np.zeros((1, 1, 2, 4)); p[..., 0, 3] = 1; p[..., 1, 0] = 1
        >>> finish_segmentation(p, np.ones((1, 1, 2, 3)), SegmentationContract()).tolist()
        [[[3, 0]]]
    """
    probabilities = check_probabilities(probabilities, contract.target, image, case_id)
    labels = contract.target.to_labels_numpy(probabilities)
    return postprocess(labels, image, contract.postprocessing, case_id, contract.target.labels)
