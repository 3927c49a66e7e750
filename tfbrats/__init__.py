"""tfbrats: brain tumor segmentation with ImageNet-pretrained AlbuNet in Keras 3.

Importing the package is cheap: the subpackages (`tfbrats.models`, `tfbrats.data`, ...) load
TensorFlow, Keras and the imaging libraries only when they are imported themselves.
"""

import os
import sys

# TensorFlow's x86 build runs its oneDNN CPU kernels only on CPUs with AVX512-VNNI/BF16 or AMX
# unless asked. Measured on a 2-core AMD EPYC without them (`tools/benchmark.py train_step
# --baselines`): an AlbuNet3D train step 1.5x (batch 2 of 24x128x128) to 2.5x (8x64x64) faster
# with them. Set before TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# A command: `python -m tfbrats.<command>` (while Python locates the module it imports this package
# with sys.argv[0] set to "-m", as `python -m`'s help documents) or a `tfbrats-<command>` console
# script (sys.argv[0] is the script). Every such command then starts without
# TensorFlow's C++ start-up messages (cuFFT/cuDNN/cuBLAS factory registration errors, CUDA and
# TensorRT notices), which only level 3 hides; TF_CPP_MIN_LOG_LEVEL set by the user wins.
# TensorFlow 2.21 also writes lines while its library loads, before its logging reads that level
# ("All log messages before absl::InitializeLog() is called are written to STDERR", oneDNN and
# CUDA notices): for the commands, the import of tensorflow runs with file descriptor 2 sent to a
# temporary file, which is replayed only when the import fails.
if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "").startswith("tfbrats-"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3":
        from tfbrats._quiet_import import hide_tensorflow_startup_lines

        hide_tensorflow_startup_lines()

__version__ = "0.1.0"
