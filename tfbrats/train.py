"""``python -m tfbrats.train``: the training command, `tfbrats.cli.train` (console script ``tfbrats-train``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.train import main

    sys.exit(main())
