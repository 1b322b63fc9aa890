"""The errors testgate reports to a user, each tied to the exit code SPEC gives it.

Code that meets a problem raises one of these with a message that names the problem
and the fix; only the command line turns them into output and an exit code.
"""


class TestgateError(Exception):
    """A problem the user must act on; ``exit_code`` is what the command exits with."""

    exit_code = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(TestgateError):
    """Bad option, bad configuration value or unreadable config file: exit 2."""

    exit_code = 2


class InfraError(TestgateError):
    """pytest could not start or crashed, a report is missing or malformed: exit 3."""

    exit_code = 3
