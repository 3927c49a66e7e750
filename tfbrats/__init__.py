"""tfbrats: brain tumor segmentation with ImageNet-pretrained AlbuNet in Keras 3.

Importing the package is cheap: the subpackages (`tfbrats.models`, `tfbrats.data`, ...) load
TensorFlow, Keras and the imaging libraries only when they are imported themselves.
"""

import os

# TensorFlow's x86 build runs its oneDNN CPU kernels only on CPUs with AVX512-VNNI/BF16 or AMX
# unless asked. Measured on a 2-core AMD EPYC without them (`tools/benchmark.py train_step
# --baselines`): an AlbuNet3D train step 1.5x (batch 2 of 24x128x128) to 2.5x (8x64x64) faster
# with them. Set before TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
