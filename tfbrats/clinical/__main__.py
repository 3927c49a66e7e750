"""``python -m tfbrats.clinical``: the clinical preparation command, `tfbrats.cli.clinical` (``tfbrats-clinical``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.clinical import main

    sys.exit(main())
