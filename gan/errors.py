"""The exception every command line (gan.train, gan.generate, gan.evaluate) turns into one line on
stderr with exit status 2: bad input, as opposed to a bug.

Raise `UsageError` for any problem the user can fix (an option, a file, a run directory); the
message names the flag or path and says what to do. gan.data.DataError is a subclass. No
TensorFlow import: the command lines report usage errors before TensorFlow loads.
"""


class UsageError(ValueError):
    """Bad input; the message names the flag or path and says what is expected."""
