"""``python -m runner``: the same as the ``testgate`` console script.

This file only ever runs as ``__main__``, so it needs no import guard.
"""

import sys

from runner.cli import main

sys.exit(main())
