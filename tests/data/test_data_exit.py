"""A process that uses `make_dataset` ends promptly, however the script holds the pipeline.

Each usage pattern runs as its own Python process, several times (the exit races with the
pipeline's background work), and must end within `EXIT_SECONDS` of its last line. Augmented
16x64x64 patches keep the pipeline's map calls running when the script ends: the case in which
the interpreter's teardown waited for them forever (every pattern with a live iterator hung).
"""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

RUNS = 3
PATCH = (16, 64, 64)  # augmented patches of this size keep map calls in flight when a script ends
EXIT_SECONDS = 10.0

PREAMBLE = """
import sys, time
import tfbrats
from tfbrats.data import AugmentConfig, find_cases, make_dataset

cases = find_cases(sys.argv[1]).cases

def build():
    return make_dataset(cases, PATCH, 2, augment=AugmentConfig(), seed=0)

def last_line():
    print("LAST", time.time(), flush=True)
""".replace("PATCH", repr(PATCH))

KERAS_MODEL = """
import keras
model = keras.Sequential([keras.Input((16, 64, 64, 3)), keras.layers.Conv3D(4, 1)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
"""

PATTERNS = {
    "kept_iterator": """
        it = iter(build())
        images, labels = next(it)
        assert images.shape == (2, 16, 64, 64, 3), images.shape
        last_line()
    """,
    "take_loop": """
        ds = build()
        shapes = [tuple(labels.shape) for _, labels in ds.take(3)]
        assert shapes == [(2, 16, 64, 64)] * 3, shapes
        last_line()
    """,
    "numpy_iterator": """
        it = build().as_numpy_iterator()
        images, labels = next(it)
        assert images.dtype.name == "float32" and labels.shape == (2, 16, 64, 64)
        last_line()
    """,
    "keras_fit": """
        KERAS_MODEL
        history = model.fit(build(), steps_per_epoch=2, epochs=2, verbose=0)
        assert len(history.history["loss"]) == 2
        last_line()
    """,
    "keras_evaluate": """
        KERAS_MODEL
        loss = model.evaluate(build(), steps=2, verbose=0)
        assert loss > 0
        last_line()
    """,
    "keras_predict": """
        KERAS_MODEL
        logits = model.predict(build(), steps=2, verbose=0)
        assert logits.shape == (4, 16, 64, 64, 4), logits.shape
        last_line()
    """,
    "distributed_iterator": """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        it = iter(strategy.experimental_distribute_dataset(build()))
        images, labels = next(it)
        assert len(images.values) == 2, images
        last_line()
    """,
    "exception_mid_iteration": """
        it = iter(build())
        next(it)
        last_line()
        raise RuntimeError("stopped by the script")
    """,
}


def _script(body: str) -> str:
    return PREAMBLE + textwrap.dedent(body).replace("KERAS_MODEL\n", KERAS_MODEL)


def _start(script: str, data: Path, stderr_path: Path) -> subprocess.Popen:
    """Starts `script` with the dataset folder as its argument, stderr into a file."""
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(data)], stdout=subprocess.PIPE, stderr=stderr, text=True
        )


def _wait_for_line(process: subprocess.Popen, prefix: str) -> str:
    """Reads the process's output up to the first line starting with `prefix` ("" at its end)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    return ""


def _exit_seconds(process: subprocess.Popen, since: float, stderr_path: Path) -> float:
    """Waits for the process to end; the seconds from `since`, or a failure after `EXIT_SECONDS`."""
    try:
        process.communicate(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(
            f"the script was still running {EXIT_SECONDS} s after its last line; stderr: "
            f"{stderr_path.read_text()[-2000:]}"
        )
    return time.time() - since


def _run_pattern(pattern: str, data: Path, tmp_path: Path) -> None:
    """Runs one usage pattern `RUNS` times; each must end within `EXIT_SECONDS` of its last line."""
    for run in range(RUNS):
        stderr_path = tmp_path / f"{pattern}_{run}.err"
        process = _start(_script(PATTERNS[pattern]), data, stderr_path)
        last = _wait_for_line(process, "LAST ")
        if not last:
            process.wait()
            pytest.fail(
                f"{pattern} never reached its last line (status {process.returncode}): "
                f"{stderr_path.read_text()[-3000:]}"
            )
        seconds = _exit_seconds(process, float(last.split()[1]), stderr_path)
        stderr = stderr_path.read_text()
        if pattern == "exception_mid_iteration":
            assert process.returncode == 1 and "RuntimeError: stopped by the script" in stderr, stderr[-3000:]
        else:
            assert process.returncode == 0, stderr[-3000:]
        assert seconds < EXIT_SECONDS, f"{pattern} run {run}: {seconds:.1f} s from the last line to the exit"


@pytest.mark.parametrize(
    "pattern",
    [
        "kept_iterator",
        pytest.param("numpy_iterator", marks=pytest.mark.slow),
        pytest.param("take_loop", marks=pytest.mark.slow),
        pytest.param("exception_mid_iteration", marks=pytest.mark.slow),
        pytest.param("distributed_iterator", marks=pytest.mark.slow),
    ],
)
def test_script_ends_after_its_last_line(pattern: str, brats2020: Path, tmp_path: Path) -> None:
    _run_pattern(pattern, brats2020, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["keras_fit", "keras_evaluate", "keras_predict"])
def test_keras_script_ends_after_its_last_line(pattern: str, brats2020: Path, tmp_path: Path) -> None:
    _run_pattern(pattern, brats2020, tmp_path)


CTRL_C_LOOPS = {
    # Ctrl-C during the training step (the sleep) or while the main thread waits for a batch
    "during_step": """
        for step, (images, labels) in enumerate(build()):
            print("STEP", step, flush=True)
            time.sleep(0.5)
    """,
    "waiting_for_batch": """
        for step, (images, labels) in enumerate(build()):
            print("STEP", step, flush=True)
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("where", sorted(CTRL_C_LOOPS))
def test_ctrl_c_mid_iteration_ends_the_script(where: str, brats2020: Path, tmp_path: Path) -> None:
    # Python's own Ctrl-C handler, also when the test runs in a background job (which starts with SIGINT ignored)
    script = _script("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
                     + textwrap.dedent(CTRL_C_LOOPS[where]))
    for run in range(RUNS):
        stderr_path = tmp_path / f"ctrl_c_{run}.err"
        process = _start(script, brats2020, stderr_path)
        assert _wait_for_line(process, "STEP 2"), stderr_path.read_text()[-3000:]
        time.sleep(0.2 * run)  # a different moment of the loop each run
        interrupted = time.time()
        process.send_signal(signal.SIGINT)
        seconds = _exit_seconds(process, interrupted, stderr_path)
        stderr = stderr_path.read_text()
        assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-3000:]  # nothing after it: no crash
        assert process.returncode in (1, 130, -signal.SIGINT), (process.returncode, stderr[-3000:])
        assert seconds < EXIT_SECONDS, f"run {run}: {seconds:.1f} s from Ctrl-C to the exit"


def test_exit_guard_finds_the_iterators_over_pipelines(brats2020: Path) -> None:
    import tensorflow as tf

    from tfbrats.data import find_cases, make_dataset
    from tfbrats.data.exit_guard import ExitGuard

    guard = ExitGuard()
    pipeline = make_dataset(find_cases(brats2020).cases, (1, 8, 8), 2)
    guard.pipelines.add(pipeline)
    kept = iter(pipeline)
    taken = iter(pipeline.take(2).map(lambda x, y: x))
    numpy = pipeline.as_numpy_iterator()
    other = iter(tf.data.Dataset.range(3))
    found = {id(it) for it in guard.live_iterators()}
    assert {id(kept), id(taken), id(numpy._iterator)} <= found
    assert id(other) not in found
    assert next(kept)[0].shape == (2, 1, 8, 8, 3)


def test_stop_iterator_ends_the_pipeline_and_its_patches(brats2020: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tfbrats.data import AugmentConfig, exit_guard, find_cases, make_dataset, pipeline

    calls = []
    sample_patch = pipeline.sample_patch

    def counted(*args, **kwargs):
        calls.append(1)
        return sample_patch(*args, **kwargs)

    monkeypatch.setattr(pipeline, "sample_patch", counted)
    it = iter(make_dataset(find_cases(brats2020).cases, PATCH, 2, augment=AugmentConfig(), seed=0))
    assert next(it)[0].shape == (2, *PATCH, 3)
    exit_guard.stop_iterator(it)
    made = len(calls)
    time.sleep(1.0)  # a running pipeline makes several patches a second here
    assert len(calls) == made
    with pytest.raises(StopIteration):
        next(it)
