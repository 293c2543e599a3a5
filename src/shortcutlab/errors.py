"""One exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class ShortcutlabError(Exception):
    """A mistake in the user's input (config, data, paths) with a message that says how to fix it."""
