"""testgate: one CI step for a Python test suite.

Runs pytest in parallel in the project's own environment, merges what pytest and
coverage.py wrote into one honest record, and evaluates quality gates on it.
"""

__version__ = "0.1.0"
