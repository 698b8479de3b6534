"""The records the profiles stage sends on ``<app_id>-cluster-input``: a profile's feature vector, a merge.

The clusters stage (app/clusters/state.py) reads them with
:func:`app.clusters.state.parse_input`; they are built here, in the stage that sends them,
so that the profiles stage does not import the clusters stage (which reads the profile's
features from this package).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.profiles import unified as profile


def cluster_input(profile_id: str, value: Mapping[str, Any], input_id: str,
                  config: profile.ProfileConfig = profile.DEFAULT_CONFIG) -> dict[str, Any]:
    """The ``cluster-input`` record of a profile: its feature vector at its last event.

    The vector is read at the profile's last event time, not at the wall clock or a tick,
    so the record depends only on the profile state (the same after a replay).
    ``input_id`` names what caused it (the closed session's id).

    >>> import math
    >>> value = {"profile": {**profile.new_state(), "events": 3, "first_seen": 0.0, "last_seen": 3600.0}}
    >>> doc = cluster_input("p-1", value, "ses-e1")
    >>> doc["at"], doc["vector"]["lifetime_events_log"] == math.log1p(3)
    (3600.0, True)
    """
    state = value["profile"]
    at = float(state["last_seen"] if state["last_seen"] is not None else 0.0)
    return {"profile_id": profile_id, "input_id": input_id, "at": at,
            "vector": profile.feature_vector(state, at, config)}



def merge_record(absorbed_id: str, surviving_id: str, change_id: str, at: float) -> dict[str, Any]:
    """The ``cluster-input`` record that tells the clusters stage ``absorbed_id`` was merged."""
    return {"profile_id": absorbed_id, "merged_into": surviving_id, "change_id": change_id, "at": at}
