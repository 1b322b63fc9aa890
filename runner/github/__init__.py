"""GitHub Actions: the only package that knows GitHub.

On a runner (``GITHUB_ACTIONS=true``) testgate puts failures and flaky tests on the pull
request as check annotations, uncovered changed lines too, writes the job summary and the
step outputs, and keeps the tests' own output from issuing workflow commands.

``commands`` formats (pure: workflow commands, annotations, the summary's text, output
values), ``step_files`` writes ``GITHUB_STEP_SUMMARY`` and ``GITHUB_OUTPUT``, ``client``
is the REST client (made by the caller, with the job's token, and passed in), and
``step`` puts them together at the end of a command.
"""
