"""Doctest collection of the package: `pytest --doctest-modules tfbrats` runs every docstring example.

The `python -m tfbrats.*` entry points are not collected: each declares its absl flags when it is
imported (as absl applications do), several declare flags of the same name (`--model`,
`--data_dir`), and one process cannot import two of them. Their logic lives in library modules,
whose examples do run: each makes the tiny data it needs (a temporary folder, synthetic cases).
"""

collect_ignore = [
    "clinical/__main__.py",
    "demo.py",
    "evaluate.py",
    "predict.py",
    "prepare.py",
    "train.py",
    "tune.py",
]
