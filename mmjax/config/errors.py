"""The error every config mistake becomes: one line naming the key, exit code 2 from the CLI."""


class ConfigError(ValueError):
    """A config problem found before anything compiles or trains; the message names the key."""
