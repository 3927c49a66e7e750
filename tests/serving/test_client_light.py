"""The REST client, its case reading and the signature names load without TensorFlow or Keras."""

import subprocess
import sys


def test_rest_client_needs_no_tensorflow():
    code = (
        "import sys; import tfbrats.data, tfbrats.serving.client, tfbrats.serving.signatures; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
