"""``python -m tfbrats.demo``: the demo command, `tfbrats.cli.demo` (console script ``tfbrats-demo``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.demo import main

    sys.exit(main())
