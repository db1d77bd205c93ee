"""The one exception type for bad user input.

Its message is a single line naming the problem and the fix; the CLI prints it as
``error: <message>`` and exits non-zero. It lives in `models` (the package every
other one may import) so that models, tasks and bench all raise the same type.
"""


class UserInputError(Exception):
    """Bad input from the user: a flag, a file, a corpus, a config value."""
