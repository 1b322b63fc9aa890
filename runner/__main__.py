"""``python -m runner``: the same as the ``testgate`` console script (``runner.entry``).

This file only ever runs as ``__main__``, so it needs no import guard.
"""

import sys

from runner.entry import main

sys.exit(main())
