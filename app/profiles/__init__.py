"""The profiles stage, pure: per-profile state, its fold over profile-events, and what it serves.

:mod:`app.profiles.state`
    The profiles table's value per ``profile_id`` (sessions, unified profile, rule segments),
    its update per event and per tick, and what Redis serves of it.
:mod:`app.profiles.unified`
    The unified profile: lifetime counts, RFM with decay, affinities, traits, quality flags.
:mod:`app.profiles.features`
    Every profile feature in one table, and the numeric vector used for clustering.
:mod:`app.profiles.quality`
    Online data-quality checks (outliers, bot-like rates).
:mod:`app.profiles.merges`
    Identity changes in this stage: merges, splits, redirects and CRM traits as records.
:mod:`app.profiles.fold`
    One batch of ``<app_id>-profile-events`` records -> everything the batch does, in the order
    agents/profiles.py carries it out.
:mod:`app.profiles.pack`
    The wire format of ingest's packs on ``<app_id>-profile-events``.
:mod:`app.profiles.cluster_input`
    The records this stage sends to the clusters stage on ``<app_id>-cluster-input``.
:mod:`app.profiles.timer_queue`
    Which profiles a tick must visit.
"""
