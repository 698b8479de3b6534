"""Seeded traffic simulator: realistic clickstream and CRM records with ground truth.

Customers of six behaviour archetypes, with several devices and cookies, browse,
search, buy, log in with identifiers spelt in varying ways, and answer cookie
banners; offline systems hold their own versions of the same people. The stream
also carries deliberately malformed records (each with the dead-letter reason it
must get) and publisher retries. Everything follows from the seed.

Modules, one concept each:

``config``      :class:`SimConfig`, the single input
``generator``   :func:`iter_records`, the merged, time-ordered stream
``behaviour``   one customer's sessions and events
``population``  who the customers are (archetype, identity, devices)
``archetypes``  the behaviour parameters
``identity``    names, e-mails, phones, addresses, account ids
``variants``    surface forms and typos of identifiers
``catalog``     products, categories and prices
``crm``         CRM, till and call-centre records
``malformed``   invalid records and their reason codes
``record``      :class:`SimRecord`
``jsonl``       :func:`write_jsonl` / :func:`read_jsonl`, byte-exact files
``truth``       :class:`TruthWriter`, the ground truth files
``producer``    :func:`produce`, publishing with aiokafka
``stats``       :class:`ProduceStats`
``command``     the ``simulate`` click command

Examples
--------
>>> from datetime import datetime, UTC
>>> config = SimConfig(seed=9, customers=30, end=datetime(2024, 3, 1, tzinfo=UTC), max_events=50)
>>> sum(1 for _ in iter_records(config))
50
"""

from app.simulator.config import SimConfig, SimTopics
from app.simulator.errors import JsonlFormatError, ProduceError, SimulatorError
from app.simulator.generator import iter_records
from app.simulator.jsonl import read_jsonl, write_jsonl
from app.simulator.producer import produce
from app.simulator.record import SimRecord
from app.simulator.stats import ProduceStats
from app.simulator.truth import TruthWriter

__all__ = [
    "JsonlFormatError",
    "ProduceError",
    "ProduceStats",
    "SimConfig",
    "SimRecord",
    "SimTopics",
    "SimulatorError",
    "TruthWriter",
    "iter_records",
    "produce",
    "read_jsonl",
    "write_jsonl",
]
