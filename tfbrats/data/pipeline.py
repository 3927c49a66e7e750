"""The tf.data pipeline of training and validation patches."""

from __future__ import annotations

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


def make_dataset(
    source: Source,
    patch_size: Sequence[int],
    batch_size: int,
    *,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    repeat: bool = True,
    foreground_fraction: float = 0.0,
    foreground_sampling: str = "voxels",
    training: bool = True,
    input_channels: int = 3,
    sample_transforms: Sequence[SampleTransform] = (),
    input_context: tf.distribute.InputContext | None = None,
    first_index: int = 0,
) -> tf.data.Dataset:
    """Builds a tf.data pipeline of ``(images, labels)`` patch batches.

    Training mode: each epoch visits every case once in a seeded random order, taking a random
    patch (centred on tumor with probability `foreground_fraction`), then augments it and applies
    `sample_transforms`. Validation mode (``training=False``): one fixed patch per case, the same
    every pass, never augmented. Patch ``i`` is drawn from a generator seeded by ``(seed, i)``,
    so the batches do not depend on thread scheduling. Sampling and augmentation run in a
    parallel ``map`` with AUTOTUNE, followed by ``prefetch``.

    Distribution: pass the result (global `batch_size`) to
    ``strategy.experimental_distribute_dataset`` (sharded by data across workers), or call this
    inside ``strategy.distribute_datasets_from_function`` with `input_context`: each input
    pipeline then samples only its own shard, at the per-replica batch size.

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
            epoch's case, each voxel alike (edema, most of them, most often); "classes" first draws
            a tumor class uniformly among the dataset's, then a case holding it, then one of its
            voxels (`tfbrats.data.sampling.class_balanced_patch`), so every class is centred on
            alike, the resection cavity of post-treatment cases too. The other patches are placed
            at random in the epoch's case either way.
        training: Training (random, augmented) or validation (fixed) patches.
        input_channels: 3 or 4, used when `source` lists `Case` objects.
        sample_transforms: Extra training-only per-patch steps run after augmentation.
        input_context: The `tf.distribute.InputContext` under ``distribute_datasets_from_function``.
        first_index: Training mode: the index of the first patch (a run resumed after s steps of
            batch B starts at s * B, so it sees the patches the unbroken run would).

    Returns:
        A dataset of ``(images float32 (B, d, h, w, C), labels int32 (B, d, h, w))``.

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
    if len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(f"patch_size must be three positive sizes (d, h, w); got {patch_size}")
    unlabelled = [case.meta.case_id for case in cases if case.label is None]
    if unlabelled:
        raise ValueError(f"cases without a reference segmentation cannot make patches: {unlabelled[:5]}")
    num_channels = {case.image.shape[-1] for case in cases}
    if len(num_channels) != 1:
        raise ValueError(f"the cases have different channel counts {sorted(num_channels)}; use one cache")
    channels = num_channels.pop()
    count = len(cases)
    if foreground_sampling not in ("voxels", "classes"):
        raise ValueError(f"foreground_sampling must be 'voxels' or 'classes'; got {foreground_sampling!r}")
    balanced = cases_per_class([case.label for case in cases]) if foreground_sampling == "classes" else None

    def make_patch(patch_index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        index = int(patch_index)
        chosen = None
        if training:
            order = np.random.default_rng([seed, 0, index // count]).permutation(count)
            case = cases[order[index % count]]
            rng = np.random.default_rng([seed, 1, index])
            if balanced is not None:
                chosen = class_balanced_patch(balanced, rng, foreground_fraction)
                case = case if chosen is None else cases[chosen[1]]
        else:
            case = cases[index]
            rng = np.random.default_rng([seed, 2, index])
        if chosen is not None:
            image, label = sample_patch(case.image, case.label, patch_size, rng, foreground_class=chosen[0])
        else:
            fraction = 0.0 if training and balanced is not None else foreground_fraction
            image, label = sample_patch(case.image, case.label, patch_size, rng, fraction)
        if training:
            if augment is not None:
                image, label = augment_patch(image, label, augment, rng)
            for transform in sample_transforms:
                image, label = transform(image, label, rng)
        return image.astype(np.float32), label.astype(np.int32)

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = tf.numpy_function(make_patch, [index], (tf.float32, tf.int32), stateful=False)
        image.set_shape(patch_size + (channels,))
        label.set_shape(patch_size)
        return image, label

    if training and repeat:
        indices = tf.data.Dataset.counter(start=first_index)
    else:
        indices = tf.data.Dataset.range(count)
        if repeat:
            indices = indices.repeat()
    options = tf.data.Options()
    if input_context is not None:
        indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    else:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.prefetch(tf.data.AUTOTUNE).with_options(options)
    GUARD.add(dataset)
    return dataset
