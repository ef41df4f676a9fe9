"""Teachers: the built-in one trained here, or the user's model loaded from a file."""
