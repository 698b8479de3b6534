"""Exceptions of persona-stream, one module so callers know what to catch."""


class PersonaError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PersonaError):
    """A setting or configuration file is invalid; the message says which and why."""


class StackError(PersonaError):
    """The embedded broker or Redis could not be started or reached."""
