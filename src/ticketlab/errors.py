"""One exception type for everything a user can fix.

The CLI prints a `TicketlabError` as a single line and exits non-zero; any other exception is a bug
and keeps its traceback. Messages name the file, key or parameter and say what was expected.
"""


class TicketlabError(Exception):
    """A problem with the user's input (config, data, checkpoint, mask, run dir)."""
