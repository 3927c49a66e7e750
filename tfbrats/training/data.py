"""The data of a training run: labelled cases split by patient, and the check that the patch fits them."""

from __future__ import annotations

from tfbrats.data import Case, PreprocessedCase
from tfbrats.training.config import ConfigError, TrainConfig, round_up


def _split(config: TrainConfig) -> tuple[list, list, dict | None]:
    """The run's training and validation cases (unloaded `Case`s, or cache ids), and the cache if any."""
    from tfbrats.data import find_cases, load_cache, split_cases

    source = config.data_dir or config.cache_dir
    loaded = None
    try:
        if config.data_dir is not None:
            cases = find_cases(config.data_dir).cases
            labelled_ids = [case.case_id for case in cases if case.has_seg]
        else:
            loaded = {case.meta.case_id: case for case in load_cache(config.cache_dir)}
            cases = [Case(case_id, {}, None) for case_id in loaded]
            labelled_ids = [case_id for case_id, case in loaded.items() if case.label is not None]
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"cannot read the training data in {source}: {error}") from error
    if not labelled_ids:
        raise ConfigError(
            f"no case with a reference segmentation (seg) in {source} ({len(cases)} cases without one); "
            "training needs labelled cases, e.g. BraTS' training data, not its validation data"
        )
    labelled = [case for case in cases if case.case_id in set(labelled_ids)]
    train, val = split_cases(labelled, config.fold, config.num_folds, config.seed)
    if not train or not val:
        raise ConfigError(
            f"{len(labelled)} labelled case(s) in {source} leave the training or validation set of fold "
            f"{config.fold} of {config.num_folds} empty; add cases or lower --num_folds"
        )
    return train, val, loaded


def _load(config: TrainConfig, cases: list, loaded: dict | None) -> list[PreprocessedCase]:
    """Checks every case's headers and values (in parallel, before any is loaded), then loads them."""
    from tfbrats.data import CaseError, check_cases, load_case

    if loaded is not None:
        return [loaded[case.case_id] for case in cases]
    try:
        check_cases(cases, config.input_channels)
        return [load_case(case, config.input_channels) for case in cases]
    except CaseError as error:
        raise ConfigError(f"a case in {config.data_dir} cannot be used: {error}") from error


def load_split(config: TrainConfig) -> tuple[list[PreprocessedCase], list[PreprocessedCase]]:
    """Loads the labelled cases and splits them by patient into training and validation.

    A cache is split exactly like the dataset it was made from (the split depends on case ids only).
    Every case's values are checked before any is loaded (`tfbrats.data.check_cases`).

    Raises:
        ConfigError: No cases, no labelled case, a case that fails its checks, or a split
            that leaves the training or validation set empty.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=5, shape=(48, 48, 32))
        >>> train, val = load_split(TrainConfig(model_dir=f"{tmp.name}/run", data_dir=tmp.name))
        >>> len(train), [case.meta.case_id for case in val]
        (4, ['BraTS20_Training_003'])
        >>> tmp.cleanup()
    """
    train, val, loaded = _split(config)
    cases = _load(config, train + val, loaded)
    return cases[: len(train)], cases[len(train):]


def load_validation_cases(config: TrainConfig) -> list[PreprocessedCase]:
    """The run's validation cases alone, loaded as `load_split` loads them (what tuning scores).

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=5, shape=(48, 48, 32))
        >>> cases = load_validation_cases(TrainConfig(model_dir=f"{tmp.name}/run", data_dir=tmp.name))
        >>> [case.meta.case_id for case in cases]
        ['BraTS20_Training_003']
        >>> tmp.cleanup()
    """
    _, val, loaded = _split(config)
    return _load(config, val, loaded)


def check_patch_fits(config: TrainConfig, cases: list[PreprocessedCase]) -> None:
    """Rejects a patch larger than the largest training case (in-plane rounded up to 32).

    Beyond that size a patch is padding in every case: slower and no more informative.

    Example:
        >>> import tempfile
        >>> from tfbrats.data.synthetic import write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = write_synthetic_dataset(tmp.name, cases=5, shape=(48, 48, 32))
        >>> train, _ = load_split(TrainConfig(model_dir=f"{tmp.name}/run", data_dir=tmp.name))
        >>> check_patch_fits(TrainConfig(model_dir="x", patch_size=(8, 64, 64)), train)
        >>> check_patch_fits(TrainConfig(model_dir="x", patch_size=(1, 512, 512)), train)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.training.config.ConfigError: patch_size (1, 512, 512) ... at most (25, 64, 64); choose a smaller patch
        >>> tmp.cleanup()
    """
    channels = {case.image.shape[-1] for case in cases}
    if channels != {config.input_channels}:
        raise ConfigError(
            f"the training cases have {sorted(channels)} channels but input_channels is {config.input_channels}; "
            "use a cache made with the same --input_channels"
        )
    largest = [max(case.image.shape[axis] for case in cases) for axis in range(3)]
    depth = 1 if config.model == "albunet2d" else largest[0]
    allowed = (depth, round_up(largest[1]), round_up(largest[2]))
    if any(p > a for p, a in zip(config.patch_size, allowed)):
        raise ConfigError(
            f"patch_size {tuple(config.patch_size)} is larger than the data allow: the largest cropped training "
            f"case is (D, H, W) = {tuple(largest)}, so a patch may be at most {allowed}; choose a smaller patch"
        )
