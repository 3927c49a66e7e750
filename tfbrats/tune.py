"""``python -m tfbrats.tune``: the tuning command, `tfbrats.cli.tune` (console script ``tfbrats-tune``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.tune import main

    sys.exit(main())
