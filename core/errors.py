"""One exception tree for every problem the user can fix; the CLI prints it as one line."""


class EdgeshrinkError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""


class ProfileError(EdgeshrinkError, ValueError):
    """A hardware profile that cannot be used; the message names the file and the field.

    Also a ValueError, as it was before the tree had one root, for callers that catch that."""
