"""Test-wide settings: quiet TensorFlow logs; the machine has 2 cores shared by everything."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tfbrats  # noqa: E402, F401  (before any test module loads TensorFlow: the package's oneDNN setting)
