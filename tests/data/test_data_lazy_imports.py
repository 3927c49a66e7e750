"""Prediction's imports stay light: `tfbrats.data` loads augmentation (SciPy's image filters) only when asked."""

import subprocess
import sys

PROBE = """
import sys
from tfbrats.data import find_cases, load_case
from tfbrats.inference.predict import predict_cases
print("scipy.ndimage" in sys.modules, "tfbrats.data.augment" in sys.modules)
from tfbrats.data import AugmentConfig, augment_patch
import tfbrats.data.augment as augment
print(AugmentConfig is augment.AugmentConfig and augment_patch is augment.augment_patch)
"""


def test_prediction_imports_no_augmentation_until_it_is_used():
    finished = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    assert finished.stdout.split() == ["False", "False", "True"]
