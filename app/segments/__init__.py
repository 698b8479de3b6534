"""Real-time rule segmentation, the pure core: rules, windowed counts, evaluation, memberships.

One concept per module:

:mod:`~app.segments.known_features`
    Registry of the profile feature names rules may use.
:mod:`~app.segments.rules`
    The condition language and the TOML rules file (``default_rules.toml``).
:mod:`~app.segments.windows`
    Bucketed windowed event counts in plain-JSON state, exact under replay.
:mod:`~app.segments.evaluate`
    Rules -> current segments with reasons; hysteresis; timer scheduling.
:mod:`~app.segments.membership`
    Membership state and its diff into ``segment-changes`` records; merge/split/erase.
:mod:`~app.segments.state`
    The ``segments`` table value (windows + memberships) and its registered hook.

Cluster segments (online clustering) are the next stage, :mod:`app.clusters`.
"""
