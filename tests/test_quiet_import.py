"""What C++ code writes to descriptor 2 during a command's first `import tensorflow`: hidden, or replayed on failure."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys
    from tfbrats._quiet_import import _descriptor_2_captured
    with _descriptor_2_captured():
        os.write(2, b"start-up line\\n")
    try:
        with _descriptor_2_captured():
            os.write(2, b"why it failed\\n")
            raise ImportError("broken library")
    except ImportError as error:
        print(error)
    os.write(2, b"after\\n")
""")


def test_lines_are_hidden_when_the_import_works_and_replayed_when_it_fails():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "broken library\n"
    assert done.stderr == "why it failed\nafter\n"


def test_a_command_imports_tensorflow_without_its_start_up_lines():
    code = "import sys; sys.argv[0] = '-m'; import tfbrats, tensorflow; print(tensorflow.__version__)"
    # As a user runs a command: TF_CPP_MIN_LOG_LEVEL unset (a level the user sets keeps its lines).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr == ""
