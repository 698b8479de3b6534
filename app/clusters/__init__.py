"""Cluster segments, pure: one online model for all profiles, and per-profile memberships.

:mod:`app.clusters.model`
    Online clustering (River k-means) with stable cluster ids, labels, persistence and quality.
:mod:`app.clusters.state`
    The clusters table's values (memberships, the model checkpoint), the cluster-input records
    the profiles stage sends, and the fold of one record (:func:`~app.clusters.state.step`).
"""
