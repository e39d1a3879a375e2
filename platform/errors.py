"""The one exception type users see: a clear, one-line message, raised before expensive work."""


class LadderError(Exception):
    """Bad input (recipe, file, column, reward function...). The CLI prints it as one line, exit code 2."""
