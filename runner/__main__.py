"""``python -m runner``: the same as the ``testgate`` console script."""

import sys

from runner.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
