"""One exception for every problem the user can fix; the CLI prints it as a one-line error."""


class EdgeshrinkError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""
