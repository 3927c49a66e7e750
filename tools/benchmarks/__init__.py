"""The sub-commands of ``tools/benchmark.py``, one module each, over the timing and machine facts of `common`.

Each sub-command module has ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``
returning a JSON-able dict; ``forward`` also holds ``peak`` (``add_arguments`` and ``run_peak``).
``tools/benchmark.py`` dispatches over them by name.

Example:
    python tools/benchmark.py forward --repeats=5
"""
