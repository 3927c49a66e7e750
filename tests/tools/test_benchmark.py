"""tools/benchmark.py: its figures, its FLOP count against one made from the model's layers, its baselines."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfbrats.models import AlbuNet3D

BENCHMARK = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"
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
    command = [sys.executable, str(BENCHMARK), "train_step", "--patch", *map(str, PATCH), "--shape", "48", "48", "32",
               "--cases", "2", "--steps", "1", "--repeats", "1", "--baselines"]
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
