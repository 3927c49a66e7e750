"""``python -m tfbrats.prepare``: the cache command, `tfbrats.cli.prepare` (``tfbrats-prepare``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.prepare import main

    sys.exit(main())
