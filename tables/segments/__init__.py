"""Real-time segmentation, the pure core: rules, windowed counts, evaluation, memberships, clusters.

One concept per module:

:mod:`~tables.segments.known_features`
    Registry of the profile feature names rules may use.
:mod:`~tables.segments.rules`
    The condition language and the TOML rules file (``default_rules.toml``).
:mod:`~tables.segments.windows`
    Bucketed windowed event counts in plain-JSON state, exact under replay.
:mod:`~tables.segments.evaluate`
    Rules -> current segments with reasons; hysteresis; timer scheduling.
:mod:`~tables.segments.membership`
    Membership state and its diff into ``segment-changes`` records; merge/split/erase.
:mod:`~app.clusters.model`
    Online clustering (River) with stable ids, labels, persistence and quality.
:mod:`~tables.segments.state`
    The ``segments`` table value (windows + memberships) and its registered hook.
"""
