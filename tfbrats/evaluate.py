"""``python -m tfbrats.evaluate``: the evaluation command, `tfbrats.cli.evaluate` (``tfbrats-evaluate``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.evaluate import main

    sys.exit(main())
