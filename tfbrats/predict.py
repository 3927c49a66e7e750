"""``python -m tfbrats.predict``: the prediction command, `tfbrats.cli.predict` (console script ``tfbrats-predict``)."""

if __name__ == "__main__":
    import sys

    from tfbrats.cli.predict import main

    sys.exit(main())
