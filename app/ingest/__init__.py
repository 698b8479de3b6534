"""The ingest stage, pure: per-visitor activity state and the fold of one batch of clickstream records.

:mod:`app.ingest.activity`
    The ``activity`` table's value per anonymous id (counts, first and last seen) and its update.
:mod:`app.ingest.fold`
    One batch of ``clickstream`` records -> activity states, identity forwards, profile-events
    records, Redis entries and dead letters (agents/ingest.py carries them out).
"""
