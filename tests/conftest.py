"""Test-wide settings: quiet TensorFlow logs; the machine has 2 cores shared by everything.

triton (torch's GPU kernel compiler, which `import torchvision` reaches through `torch._dynamo`)
crashes the process with a segmentation fault when it loads beside TensorFlow 2.21 (measured with
torch 2.14.1 / triton 3.8.0; TensorFlow 2.16 is unaffected). The tests run torch on the CPU only,
so the test process never loads triton: torch then reports it absent and goes on without it.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.modules.setdefault("triton", None)

import tfbrats  # noqa: E402, F401  (before any test module loads TensorFlow: the package's oneDNN setting)
