"""The event contract, pure: validation of every input record, the errors it refuses them with,
dead-letter records, clickstream batch records, source positions and recent event ids.

The first stage of the flow; every later stage reads the :class:`~app.events.validation.Event`
this package validates. Imports no I/O library (contract in pyproject.toml).
"""
