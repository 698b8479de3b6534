"""Sessions, pure: event-time sessionization per profile with allowed lateness, and session summaries.

:mod:`app.sessions.state`
    A profile's sessions (the ``sessions`` part of the profiles table's value), their update
    per event, closing on a tick, and the ``session-summaries`` records.
"""
