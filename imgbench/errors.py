"""User-facing errors: each one is a single line that names the problem and the fix.

The entry points print ``imgbench: error: <message>`` and exit with status 2 for these; any other
exception is a bug and keeps its traceback.
"""

import sys


class UserError(Exception):
    """Bad input from the user (config, data, checkpoint, paths): a one-line message, exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class ConfigError(UserError):
    """A config value or key that cannot work."""


class DataError(UserError):
    """Missing, corrupt or inconsistent data."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or belongs to another model."""


class ArgumentError(ValueError):
    """A bad argument of a building block (a model's switch, say), raised where the block is built.

    ``argument`` names the argument, so that the config layer can say which key to set (``model.<argument>=...``);
    the blocks themselves know nothing of configs.
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
        self.argument = argument


def fail(error: BaseException | str, code: int = 2) -> None:
    """Print ``imgbench: error: <error>`` (one line) on stderr and exit with ``code``."""
    print(f"imgbench: error: {error}", file=sys.stderr)
    sys.exit(code)
