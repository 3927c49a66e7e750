"""The tf.data pipeline: shapes, dtypes, sources, validation mode, distribution."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfbrats.data import AugmentConfig, find_cases, load_case, make_dataset, prepare_cache

PATCH = (16, 32, 32)


def test_training_batches_from_cases(brats2020: Path) -> None:
    cases = find_cases(brats2020).cases
    dataset = make_dataset(cases, PATCH, 3, augment=AugmentConfig(), seed=1, foreground_fraction=0.5)
    assert dataset.element_spec[0].shape.as_list() == [3, *PATCH, 3]
    assert dataset.element_spec[1].shape.as_list() == [3, *PATCH]
    batches = list(dataset.take(3))
    for images, labels in batches:
        assert images.dtype.name == "float32" and labels.dtype.name == "int32"
        assert images.shape == (3, *PATCH, 3) and labels.shape == (3, *PATCH)
        assert set(np.unique(labels.numpy())) <= {0, 1, 2, 3}
    again = list(make_dataset(cases, PATCH, 3, augment=AugmentConfig(), seed=1, foreground_fraction=0.5).take(3))
    for (a, b), (c, d) in zip(batches, again):
        assert np.array_equal(a.numpy(), c.numpy()) and np.array_equal(b.numpy(), d.numpy())


def test_one_epoch_visits_every_case_once(brats2020: Path) -> None:
    pre = [load_case(c) for c in find_cases(brats2020).cases]
    # Each case filled with its own index, so a patch tells which case it came from.
    for number, case in enumerate(pre):
        case.image = np.full_like(case.image, number + 1)
    epoch = make_dataset(pre, (1, 8, 8), 1, repeat=False, seed=3)
    seen = sorted(int(images.numpy()[0, 0, 0, 0, 0]) for images, _ in epoch)
    assert seen == [1, 2, 3, 4]


def test_validation_patches_are_fixed_and_unaugmented(brats2020: Path, tmp_path: Path) -> None:
    prepare_cache(find_cases(brats2020).cases, tmp_path, workers=1, progress=False)
    dataset = make_dataset(str(tmp_path), PATCH, 3, training=False, repeat=False, augment=AugmentConfig())
    first = [(x.numpy(), y.numpy()) for x, y in dataset]
    second = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [x.shape[0] for x, _ in first] == [3, 1]  # every case once, last batch kept
    for (a, b), (c, d) in zip(first, second):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    # Unaugmented: each patch is a window of its (padded) case.
    case0 = load_case(find_cases(brats2020).cases[0])
    x0 = first[0][0][0]
    padded = np.pad(case0.image, [(0, max(0, p - s)) for p, s in zip(PATCH, case0.image.shape[:3])] + [(0, 0)])
    assert any(
        np.array_equal(x0, padded[d : d + PATCH[0], h : h + PATCH[1], w : w + PATCH[2]])
        for d in range(padded.shape[0] - PATCH[0] + 1)
        for h in range(padded.shape[1] - PATCH[1] + 1)
        for w in range(padded.shape[2] - PATCH[2] + 1)
    )


def test_sample_transforms_run_on_training_patches(brats2020: Path) -> None:
    def zero_first_channel(image, label, rng):
        image = image.copy()
        image[..., 0] = 0
        return image, label

    cases = find_cases(brats2020).cases[:2]
    images, _ = next(iter(make_dataset(cases, PATCH, 2, sample_transforms=[zero_first_channel])))
    assert not images.numpy()[..., 0].any() and images.numpy()[..., 1].any()


def test_rejects_unlabelled_cases(brats2020: Path) -> None:
    case = load_case(find_cases(brats2020).cases[0])
    case.label = None
    with pytest.raises(ValueError, match="without a reference segmentation.*BraTS20_Training_001"):
        make_dataset([case], PATCH, 1)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(brats2020: Path) -> None:
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfbrats.data import AugmentConfig, find_cases, make_dataset
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        cases = find_cases({str(brats2020)!r}).cases
        dataset = make_dataset(cases, (8, 32, 32), 4, augment=AugmentConfig(elastic=0.0))
        images, labels = next(iter(strategy.experimental_distribute_dataset(dataset)))
        for replica in (images, labels):
            parts = strategy.experimental_local_results(replica)
            assert len(parts) == 2, parts
        assert [tuple(t.shape) for t in strategy.experimental_local_results(images)] == [(2, 8, 32, 32, 3)] * 2
        assert [t.dtype.name for t in strategy.experimental_local_results(labels)] == ["int32"] * 2
        per_replica = strategy.distribute_datasets_from_function(
            lambda context: make_dataset(cases, (8, 32, 32), 4, input_context=context))
        images, _ = next(iter(per_replica))
        assert [tuple(t.shape) for t in strategy.experimental_local_results(images)] == [(2, 8, 32, 32, 3)] * 2
        print("OK", strategy.num_replicas_in_sync)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 2" in result.stdout


def test_class_balanced_patches_centre_every_class_alike(brats2020: Path) -> None:
    """"classes" centres patches on each tumor class a third of the time here; "voxels" on edema nearly always."""
    pre = [load_case(c) for c in find_cases(brats2020).cases]
    for number, case in enumerate(pre):
        label = np.zeros_like(case.label)
        d, h, w = (s // 2 for s in label.shape)
        label[d - 2:d + 2, h - 10:h + 10, w - 10:w + 10] = 2  # 1,600 voxels of edema in every case
        label[d, h - 1:h + 1, w - 1:w + 1] = 1  # 4 voxels of core
        if number == 3:
            label[d + 1, h + 3, w + 3] = 4  # one cavity voxel, in one case of four
        case.label = label
    centres = {}
    for sampling in ("voxels", "classes"):
        dataset = make_dataset(pre, (1, 8, 8), 1, seed=0, foreground_fraction=1.0, foreground_sampling=sampling)
        # A patch centred on voxel c has its corner at c - (0, 4, 4): the centre is the patch's (0, 4, 4).
        centres[sampling] = np.bincount([int(labels.numpy()[0, 0, 4, 4]) for _, labels in dataset.take(300)],
                                        minlength=5)
    assert centres["classes"][0] == 0 and centres["classes"][3] == 0
    for value in (1, 2, 4):
        assert 65 <= centres["classes"][value] <= 135, centres["classes"]  # 100 expected: binomial sd 8
    assert centres["voxels"][2] >= 290 and centres["voxels"][4] <= 1, centres["voxels"]
    with pytest.raises(ValueError, match="foreground_sampling must be 'voxels' or 'classes'; got 'cases'"):
        make_dataset(pre, (1, 8, 8), 1, foreground_sampling="cases")


def test_the_cases_are_freed_with_the_dataset_though_a_graph_that_read_it_lives(brats2020: Path) -> None:
    """A traced step's graph can outlive its run; it must not keep the loaded cases in memory."""
    import gc
    import weakref

    import tensorflow as tf

    cases = [load_case(case) for case in find_cases(brats2020).cases[:2]]
    alive = weakref.ref(cases[0].image)
    dataset = make_dataset(cases, (8, 32, 32), 2, seed=0)
    batches = iter(dataset)

    @tf.function
    def step(iterator: tf.data.Iterator) -> tf.Tensor:
        images, _ = next(iterator)
        return tf.reduce_sum(images)

    graph = step.get_concrete_function(batches)  # kept, as a gradient registry keeps a training step's
    first = float(step(batches))
    assert np.isfinite(first)
    del cases, dataset, batches
    gc.collect()
    assert graph is not None
    assert alive() is None, "the loaded cases outlived their dataset"
