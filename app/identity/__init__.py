"""Identity resolution: identifiers and matching records in, canonical profiles and changes out.

The functional core of the ``identity`` agent. Modules, one concept each:

========================  ==================================================================
``hashing``               keyed hashes of identifiers (HMAC-SHA256, 128 bits), profile ids
``normalise``             e-mail, phone (E.164), name, date, postcode, street normalisers
``blocklist``             junk values that never link
``phonetic``              Soundex codes for blocking keys
``observation``           a crm record or clickstream event → hashed, normalised observation
``comparisons``           field comparisons and their levels
``model``                 Fellegi-Sunter m/u weights, prior and thresholds (a JSON file)
``estimate``              fitting the model by EM, or from labelled pairs
``blocking``              blocking keys kept in state so candidates are found without scans
``config``                policy: per-type limits, link modes, shared devices, caps
``state``                 the four stores (``KeyValueStore`` protocol) and their shapes
``resolver``              :class:`IdentityResolver`: resolve one observation against state
``split``                 erasure, operator splits and component recomputation
``changes``               ``identity-changes.v1`` output records
``hooks``                 the ``MergeHook`` contract other profile-keyed tables implement
``link``                  batch linking of JSONL (``persona link``, the FEBRL benchmark)
``stream``                the streaming stage's pure parts: forwarding, one-table state, aliases
========================  ==================================================================

Examples
--------
>>> resolver = IdentityResolver("a-secret-of-16-chars")
>>> state = IdentityState.in_memory()
>>> resolver.resolve_crm(state, {"record_id": "1", "source": "crm",
...                              "traits": {"email": "a@example.com"}}).profile_id.startswith("p-")
True
"""

from app.identity.config import ResolverConfig
from app.identity.model import MatchModel
from app.identity.observation import InvalidRecordError, Observation
from app.identity.resolver import IdentityResolver, Resolution
from app.identity.state import IdentityState, JsonCopyStore, KeyValueStore
from tables.hooks import KeepOnSplit, MergeHook, apply_change, apply_erasure

__all__ = [
    "IdentityResolver",
    "IdentityState",
    "InvalidRecordError",
    "JsonCopyStore",
    "KeepOnSplit",
    "KeyValueStore",
    "MatchModel",
    "MergeHook",
    "Observation",
    "Resolution",
    "ResolverConfig",
    "apply_change",
    "apply_erasure",
]
