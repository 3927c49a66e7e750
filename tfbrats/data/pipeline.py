"""The tf.data pipeline of training and validation patches.

Distribution: pass `make_dataset`'s result (global batch size) to
``strategy.experimental_distribute_dataset`` (sharded by data across workers), or call it inside
``strategy.distribute_datasets_from_function`` with its `input_context`: each input pipeline then
samples only its own shard, at the per-replica batch size.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfbrats.data.augment import AugmentConfig, augment_patch
from tfbrats.data.cache import load_cache
from tfbrats.data.checks import check_case
from tfbrats.data.exit_guard import GUARD
from tfbrats.data.preprocess import PreprocessedCase, load_case
from tfbrats.data.records import Case
from tfbrats.data.sampling import cases_per_class, class_balanced_patch, sample_patch

# A per-patch step after augmentation: (image, label, rng) -> (image, label), numpy arrays.
SampleTransform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
Source = str | Path | Sequence[Case] | Sequence[PreprocessedCase]


def resolve_source(source: Source, input_channels: int = 3) -> list[PreprocessedCase]:
    """Turns a cache folder, a list of `Case` or a list of `PreprocessedCase` into preprocessed cases.

    Cases given as `Case` are all checked (headers) before any is loaded.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> from tfbrats.data import find_cases
        >>> [case.image.shape for case in resolve_source(find_cases(tmp.name).cases)]
        [(25, 39, 36, 3), (24, 37, 32, 3)]
        >>> tmp.cleanup()
    """
    if isinstance(source, (str, Path)):
        return load_cache(source)
    items = list(source)
    if not items:
        raise ValueError("make_dataset got no cases; check the data folder or the split")
    if all(isinstance(item, PreprocessedCase) for item in items):
        return items
    if all(isinstance(item, Case) for item in items):
        for case in items:
            check_case(case, input_channels)
        return [load_case(case, input_channels) for case in items]
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(f"make_dataset source must be a cache folder, Cases or PreprocessedCases; got {kinds}")


@dataclasses.dataclass(frozen=True, eq=False)
class PatchRecipe:
    """How patch ``i`` of a pipeline is drawn: the case, its position, augmentation and transforms.

    Calling it with an index returns ``(image float32 (d, h, w, C), label int32 (d, h, w))``. Patch
    ``i`` comes from a generator seeded by ``(seed, i)``, so it does not depend on thread scheduling.
    """

    cases: Sequence[PreprocessedCase]
    patch_size: tuple[int, int, int]
    training: bool = True
    seed: int = 0
    foreground_fraction: float = 0.0
    balanced: dict[int, list[int]] | None = None  # `cases_per_class(...)` for foreground_sampling="classes"
    augment: AugmentConfig | None = None
    sample_transforms: Sequence[SampleTransform] = ()

    def pick(self, index: int) -> tuple[PreprocessedCase, np.random.Generator, tuple[int, int] | None]:
        """The case of patch `index`, its generator and, when classes are balanced, (class, case) drawn."""
        count = len(self.cases)
        if not self.training:
            return self.cases[index], np.random.default_rng([self.seed, 2, index]), None
        order = np.random.default_rng([self.seed, 0, index // count]).permutation(count)
        case = self.cases[order[index % count]]
        rng = np.random.default_rng([self.seed, 1, index])
        chosen = None
        if self.balanced is not None:
            chosen = class_balanced_patch(self.balanced, rng, self.foreground_fraction)
            case = case if chosen is None else self.cases[chosen[1]]
        return case, rng, chosen

    def __call__(self, patch_index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        """Patch number `patch_index`."""
        case, rng, chosen = self.pick(int(patch_index))
        if chosen is not None:
            image, label = sample_patch(case.image, case.label, self.patch_size, rng, foreground_class=chosen[0])
        else:
            fraction = 0.0 if self.training and self.balanced is not None else self.foreground_fraction
            image, label = sample_patch(case.image, case.label, self.patch_size, rng, fraction)
        if self.training:
            if self.augment is not None:
                image, label = augment_patch(image, label, self.augment, rng)
            for transform in self.sample_transforms:
                image, label = transform(image, label, rng)
        return image.astype(np.float32), label.astype(np.int32)


def _channel_count(cases: Sequence[PreprocessedCase], patch_size: tuple[int, ...]) -> int:
    """Checks that the cases can make patches of `patch_size` and returns their one channel count."""
    if len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(f"patch_size must be three positive sizes (d, h, w); got {patch_size}")
    unlabelled = [case.meta.case_id for case in cases if case.label is None]
    if unlabelled:
        raise ValueError(f"cases without a reference segmentation cannot make patches: {unlabelled[:5]}")
    num_channels = {case.image.shape[-1] for case in cases}
    if len(num_channels) != 1:
        raise ValueError(f"the cases have different channel counts {sorted(num_channels)}; use one cache")
    return num_channels.pop()


def _patch_indices(
    count: int, training: bool, repeat: bool, first_index: int, input_context: tf.distribute.InputContext | None
) -> tuple[tf.data.Dataset, tf.data.Options]:
    """The dataset of patch indices (this input pipeline's shard) and the options of the pipeline."""
    if training and repeat:
        indices = tf.data.Dataset.counter(start=first_index)
    else:
        indices = tf.data.Dataset.range(count)
        if repeat:
            indices = indices.repeat()
    options = tf.data.Options()
    if input_context is not None:
        indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    else:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return indices, options


def make_dataset(
    source: Source, patch_size: Sequence[int], batch_size: int, *, augment: AugmentConfig | None = None,
    seed: int = 0, repeat: bool = True, foreground_fraction: float = 0.0, foreground_sampling: str = "voxels",
    training: bool = True, input_channels: int = 3, sample_transforms: Sequence[SampleTransform] = (),
    input_context: tf.distribute.InputContext | None = None, first_index: int = 0,
) -> tf.data.Dataset:
    """Builds a tf.data pipeline of ``(images, labels)`` patch batches.

    Training mode: each epoch visits every case once in a seeded random order, taking a random
    patch (centred on tumor with probability `foreground_fraction`), then augments it and applies
    `sample_transforms`. Validation mode (``training=False``): one fixed patch per case, the same
    every pass, never augmented. Patches are drawn by a `PatchRecipe` in a parallel ``map`` with
    AUTOTUNE, followed by ``prefetch``. For distribution see the module's docstring.

    Args:
        source: A cache folder (``python -m tfbrats.prepare``), a list of `Case`, or a list of
            `PreprocessedCase`. Every case needs labels.
        patch_size: ``(d, h, w)``, e.g. (24, 128, 128), or (1, 128, 128) for 2-D.
        batch_size: The global batch size.
        augment: The augmentation (None: none); ignored in validation mode.
        seed: The seed of case order, patch positions and augmentation.
        repeat: Repeat forever (else one epoch).
        foreground_fraction: Probability that a patch is centred on a tumor voxel.
        foreground_sampling: Training mode: "voxels" centres such a patch on a tumor voxel of the
            epoch's case, each voxel alike; "classes" first draws a tumor class uniformly among the
            dataset's, then a case holding it, then one of its voxels
            (`tfbrats.data.sampling.class_balanced_patch`). Other patches are placed at random.
        training: Training (random, augmented) or validation (fixed) patches.
        input_channels: 3 or 4, used when `source` lists `Case` objects.
        sample_transforms: Extra training-only per-patch steps run after augmentation.
        input_context: The `tf.distribute.InputContext` under ``distribute_datasets_from_function``.
        first_index: Training mode: the index of the first patch (a run resumed after s steps of
            batch B starts at s * B, so it sees the patches the unbroken run would).

    Returns:
        A dataset of ``(images float32 (B, d, h, w, C), labels int32 (B, d, h, w))``. It holds its
        `PatchRecipe` (and so the loaded cases) as ``patch_recipe``; keep the dataset referenced
        while anything iterates it, and the cases are freed with it.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=2, shape=(48, 48, 32))
        >>> from tfbrats.data import find_cases
        >>> ds = make_dataset(find_cases(tmp.name).cases, (8, 32, 32), 2, seed=0)
        >>> images, labels = next(iter(ds))
        >>> images.dtype.name, tuple(images.shape), labels.dtype.name, tuple(labels.shape)
        ('float32', (2, 8, 32, 32, 3), 'int32', (2, 8, 32, 32))
        >>> tmp.cleanup()
    """
    cases = resolve_source(source, input_channels)
    patch_size = tuple(int(v) for v in patch_size)
    channels = _channel_count(cases, patch_size)
    if foreground_sampling not in ("voxels", "classes"):
        raise ValueError(f"foreground_sampling must be 'voxels' or 'classes'; got {foreground_sampling!r}")
    balanced = cases_per_class([case.label for case in cases]) if foreground_sampling == "classes" else None
    recipe = PatchRecipe(cases, patch_size, training, seed, foreground_fraction, balanced, augment, sample_transforms)
    draw = _WeakRecipe(recipe)

    @tf.autograph.experimental.do_not_convert  # no Python control flow to convert
    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = tf.numpy_function(draw, [index], (tf.float32, tf.int32), stateful=False)
        image.set_shape(patch_size + (channels,))
        label.set_shape(patch_size)
        return image, label

    indices, options = _patch_indices(len(cases), training, repeat, first_index, input_context)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    dataset = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE).with_options(options)
    dataset.patch_recipe = recipe  # the one strong reference: the recipe (and its cases) lives as long as the dataset
    GUARD.add(dataset)
    return dataset


class _WeakRecipe:
    """What the pipeline's `tf.numpy_function` calls: the dataset's `PatchRecipe`, through a weak reference.

    TensorFlow keeps every Python function a traced graph calls for as long as that graph lives,
    and a training step's graph can outlive its run (its gradient functions stay in a process-wide
    registry). Called directly, the recipe, and with it every loaded case (about 60 MB each at
    BraTS size), stayed in memory after training, under the tuning that follows it in the same
    process (measured: 16 BraTS-size cases, 0.8 GB resident freed by dropping them). The dataset
    holds the recipe; this holds only a weak reference.
    """

    def __init__(self, recipe: PatchRecipe) -> None:
        self.recipe = weakref.ref(recipe)

    def __call__(self, patch_index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        recipe = self.recipe()
        if recipe is None:
            raise RuntimeError("a patch was asked of a pipeline whose dataset no longer exists; keep the dataset "
                               "returned by make_dataset referenced while it is iterated")
        return recipe(patch_index)
