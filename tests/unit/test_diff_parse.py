"""The changed lines read from git's zero-context diff (a pure function).

The fail-under-diff gate on real git repositories is in tests/integration/test_diff_coverage.py.
"""

from __future__ import annotations

import textwrap

from runner.diff_coverage import added_lines, ranges


def test_parsing_a_zero_context_diff() -> None:
    diff = textwrap.dedent(
        """\
        diff --git a/gone.py b/gone.py
        deleted file mode 100644
        --- a/gone.py
        +++ /dev/null
        @@ -1,2 +0,0 @@
        -x = 1
        -y = 2
        diff --git a/kept.py b/kept.py
        --- a/kept.py
        +++ b/kept.py
        @@ -3,2 +2,0 @@ def f():
        -    a = 1
        -    b = 2
        @@ -10 +9 @@ def g():
        -    return 1
        +    return 2
        @@ -20,0 +20,3 @@ def h():
        +    c = 3
        +    d = 4
        +    e = 5
        \\ No newline at end of file
        """
    )
    assert added_lines(diff) == {"kept.py": {9, 20, 21, 22}}
    assert ranges([5, 3, 4, 9, 7, 8]) == [[3, 5], [7, 9]]
