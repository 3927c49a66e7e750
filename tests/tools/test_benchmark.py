"""tools/benchmark.py and tools/benchmarks/: figures, FLOP count from the layers, baselines, timing, machine, policy."""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import benchmark
import keras
import numpy as np
import pytest
from benchmarks import common, data, train_step

from tfbrats.models import AlbuNet3D

REPOSITORY = Path(__file__).resolve().parents[2]
BENCHMARK = REPOSITORY / "tools" / "benchmark.py"
PATCH = (2, 32, 32)


def conv_flop(model: keras.Model, patch: tuple[int, int, int]) -> tuple[float, int]:
    """FLOP of one forward pass of `model`'s convolutions (a multiply-add counts 2) on one `patch`,
    from the shapes each convolution sees, and the number of convolutions.

    A convolution costs 2 x kernel volume x input channels x output channels per output voxel; a
    transposed convolution the same per input voxel.
    """
    convs = [layer for layer in model.layers if "Conv3D" in type(layer).__name__]
    probe = keras.Model(model.input, [t for layer in convs for t in (layer.input, layer.output)])
    shapes = [tuple(t.shape) for t in probe(np.zeros((1, *patch, 3), "float32"))]
    flop = 0.0
    for index, layer in enumerate(convs):
        inputs, outputs = shapes[2 * index], shapes[2 * index + 1]
        kernel_volume = int(np.prod(layer.kernel_size))
        voxels = inputs[1:4] if "Transpose" in type(layer).__name__ else outputs[1:4]
        flop += 2.0 * kernel_volume * inputs[-1] * outputs[-1] * int(np.prod(voxels))
    return flop, len(convs)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return AlbuNet3D(num_classes=4)


def test_albunet3d_forward_flop_from_layer_shapes_is_the_tools_constant(model):
    # 90.66 GFLOP for one 24x128x128 window; the count is linear in the voxels for in-plane sizes
    # that are multiples of 32, so two small patches must scale to the same figure.
    for patch in ((2, 32, 32), (3, 64, 64)):
        flop, convs = conv_flop(model, patch)
        assert flop / 1e9 * (24 * 128 * 128) / np.prod(patch) == pytest.approx(90.66, abs=0.005)
    assert convs == 36 + 4 + 1 + 2 * 5 + 1 + 1  # encoder, depth layers, center, 5 Up (conv + deconv), dec0, final


@pytest.mark.slow
def test_train_step_prints_its_figures_and_baselines_run_other_code(model):
    command = [sys.executable, str(BENCHMARK), "train_step", f"--patch={','.join(map(str, PATCH))}",
               "--shape=48,48,32", "--cases=2", "--steps=1", "--repeats=1", "--baselines"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    figures = json.loads(finished.stdout)
    assert figures["benchmark"] == "train_step" and figures["patch"] == list(PATCH)
    # forward + backward = 3 x the forward FLOP counted from the layers, for the batch of 2
    flop, convs = conv_flop(model, PATCH)
    assert figures["step_gflop"] == pytest.approx(3 * 2 * flop / 1e9, abs=0.006)
    assert figures["in_memory_seconds"] > 0 and figures["pipeline_seconds"] > 0
    assert figures["input_bound_ratio"] == pytest.approx(figures["pipeline_seconds"] / figures["in_memory_seconds"],
                                                         rel=0.03)
    assert figures["ratio_to_peak"] == pytest.approx(
        figures["step_gflop"] / figures["in_memory_seconds"] / figures["peak_gflops"], rel=0.03)
    # Each baseline ran another code path: TensorFlow's oneDNN kernels off, or Keras' own Conv3D layers.
    assert figures["onednn_enabled"] is True and figures["conv_layers"] == {"FoldedConv3D": convs - 5,
                                                                            "FoldedConv3DTranspose": 5}
    assert figures["onednn_off"]["onednn_enabled"] is False
    assert figures["onednn_off"]["conv_layers"] == figures["conv_layers"]
    assert figures["keras_conv3d"]["onednn_enabled"] is True
    assert figures["keras_conv3d"]["conv_layers"] == {"Conv3D": convs - 5, "Conv3DTranspose": 5}
    for name in ("onednn_off", "keras_conv3d"):
        assert figures[f"speedup_over_{name}"] == pytest.approx(
            figures[name]["in_memory_seconds"] / figures["in_memory_seconds"], rel=0.03)
    # The machine it ran on: the commit and the CPU's model and flags.
    head = subprocess.run(["git", "-C", str(BENCHMARK.parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    machine = figures["machine"]
    assert machine["commit"].removesuffix("-dirty") == head and machine["cpu_model"] != "unknown"
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    assert (machine["avx512"], machine["avx512_bf16"]) == ("avx512f" in flags, "avx512_bf16" in flags)


def test_median_seconds_times_each_call_after_the_warmup(monkeypatch):
    # A fake clock that each call advances by its own duration: the first (5 s) is the untimed warm-up.
    durations, clock = iter([5.0, 1.0, 4.0, 2.0]), [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])

    def call() -> None:
        clock[0] += next(durations)

    assert common.median_seconds(call, repeats=3, warmup=1) == (2.0, [1.0, 4.0, 2.0])
    with pytest.raises(ValueError, match="repeats must be at least 1; got 0"):
        common.median_seconds(call, repeats=0)


def test_machine_facts_are_this_checkout_and_this_cpu():
    git = ["git", "-C", str(REPOSITORY)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    changed = subprocess.run([*git, "diff", "HEAD", "--name-only", "--", "tfbrats", "tools"], capture_output=True,
                             text=True, check=True).stdout.strip()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).strip()
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split()
    assert common.machine_facts() == {"commit": head + ("-dirty" if changed else ""), "cpu_model": model,
                                      "avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
                                      "cpu_count": os.cpu_count()}


def test_every_command_the_documents_quote_is_a_subcommand_that_parses():
    """The performance guide lists the sub-commands; it and the other documents quote them."""
    documents = "\n".join(path.read_text() for path in [REPOSITORY / "README.md",
                                                          *sorted((REPOSITORY / "docs").glob("*.md"))])
    listed = re.search(r"benchmark\.py \{([a-z_,]+)\}", documents).group(1).split(",")
    assert sorted(benchmark.SUBCOMMANDS) == sorted(listed) == sorted(
        ["data", "peak", "forward", "train_step", "predict", "windows", "onnx", "modes", "reference", "publish"])
    quoted = [command for command in re.findall(r"benchmark\.py ([a-z_][^`|]*)`", documents)]
    assert len(quoted) >= 10 and {command.split()[0] for command in quoted} == set(listed)
    parser = benchmark.build_parser()
    for command in quoted:
        args = parser.parse_args(shlex.split(command))
        assert args.run is benchmark.SUBCOMMANDS[args.command][2]
    args = parser.parse_args(shlex.split("train_step --patch=8,64,64 --shape=96,96,64 --steps=5 --baselines"))
    assert (args.patch, args.shape, args.steps, args.baselines, args.batch) == ((8, 64, 64), (96, 96, 64), 5, True, 2)
    with pytest.raises(SystemExit):  # sizes are D,H,W with commas, as in every tfbrats command
        parser.parse_args(shlex.split("train_step --patch 8 64 64"))


def test_models_are_built_in_their_precision_and_the_global_policy_is_restored(monkeypatch):
    assert keras.mixed_precision.global_policy().name == "float32"
    model = common.albunet3d("mixed_bfloat16")
    convs = [layer for layer in model.layers if "Conv3D" in type(layer).__name__]
    dtypes = {layer.name: layer.dtype_policy.compute_dtype for layer in convs}
    assert dtypes.pop("final") == "float32" and set(dtypes.values()) == {"bfloat16"}  # the head keeps float32 logits
    assert keras.mixed_precision.global_policy().name == "float32"
    # train_step measures under the policy it was given, and leaves the old one behind
    seen = []
    monkeypatch.setattr(train_step, "_measure", lambda args: seen.append(keras.mixed_precision.global_policy().name))
    train_step.run(argparse.Namespace(precision="mixed_bfloat16"))
    assert seen == ["mixed_bfloat16"] and keras.mixed_precision.global_policy().name == "float32"


def test_data_reports_the_fields_of_its_recorded_figures(tmp_path):
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    args = parser.parse_args(["--cases=2", "--shape=48,48,32", "--patch=4,32,32", "--batch=2", "--batches=2",
                              "--warmup=1", "--repeats=3"])
    figures = data.run(args)
    recorded = json.loads((REPOSITORY / "docs" / "benchmarks" / "cpu_data.json").read_text())
    # "machine" is added by the entry; "augmented_before_after" is a note written beside the figures
    assert sorted(figures) == sorted(set(recorded) - {"machine", "augmented_before_after"})
    assert (figures["cases"], figures["patch"], figures["batch"]) == (2, [4, 32, 32], 2)
    for name in ("plain", "augmented"):
        assert len(figures[f"{name}_repeats"]) == 3
        assert figures[f"{name}_patches_per_s"] == statistics.median(figures[f"{name}_repeats"])
    assert figures["augmented_over_plain"] == pytest.approx(
        figures["augmented_patches_per_s"] / figures["plain_patches_per_s"], abs=1e-4)


@pytest.mark.slow
def test_modes_reports_every_mode_and_backend_with_its_dice_change(tmp_path):
    """A tiny case and held-out cases: the default's change is zero, the backends give its labels' Dice."""
    from tfbrats.data import write_synthetic_dataset

    (case,) = write_synthetic_dataset(tmp_path / "case", 1, (64, 64, 24), seed=3)
    command = [sys.executable, str(BENCHMARK), "modes", f"--case={case}", "--held_out_cases=2",
               "--held_out_shape=48,48,24", "--modes=contract,full_volume_bf16,paper_windows", "--repeats=1"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1500,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert finished.returncode == 0, finished.stderr[-3000:]
    figures = json.loads(finished.stdout)
    runs = figures["runs"]
    assert sorted(runs) == sorted(f"{m}/{b}" for m in ("contract", "full_volume_bf16", "paper_windows")
                                  for b in ("tensorflow", "onnxruntime", "openvino"))
    assert "bfloat16" in runs["full_volume_bf16/onnxruntime"]["skipped"]
    default = runs["contract/tensorflow"]
    assert default["dice_change"] == {"WT": 0.0, "TC": 0.0, "ET": 0.0} and default["speedup"] == 1.0
    assert default["window"]["patch_size"] == [8, 64, 64] and default["windows"] > 1
    assert runs["full_volume_bf16/tensorflow"]["window"] == {**default["window"], "patch_size": None,
                                                             "precision": "mixed_bfloat16"}
    assert runs["full_volume_bf16/openvino"]["windows"] == 1 and runs["paper_windows/tensorflow"]["windows"] == 1
    assert runs["paper_windows/tensorflow"]["wt_dice_vs_paper_windows"] == 1.0
    for run in runs.values():
        if "skipped" in run:
            continue
        assert 0 < run["peak_rss_gib"] < 8 and run["seconds"] == run["times"][0]
        assert run["speedup"] == pytest.approx(default["seconds"] / run["seconds"], abs=0.01)
        change = {r: round(run["mean_dice"][r] - default["mean_dice"][r], 4) for r in ("WT", "TC", "ET")}
        assert run["dice_change"] == pytest.approx(change, abs=1e-4)
    # Every backend segments through the same contract: float32 backends agree on the held-out Dice.
    for mode in ("contract", "paper_windows"):
        np.testing.assert_allclose([runs[f"{mode}/{b}"]["mean_dice"]["WT"] for b in ("onnxruntime", "openvino")],
                                   runs[f"{mode}/tensorflow"]["mean_dice"]["WT"], atol=2e-3)
    assert figures["stack"]["openvino"] and "avx512f" in figures["lscpu"].get("Flags", "avx512f")
    assert figures["machine"]["commit"]
