"""The embedded stack of ``persona up``, the integration tests and the benchmarks: the Tansu broker
(or Apache Kafka, app/embedded/kafka_broker.py) and a real redis-server on free loopback ports.

Development and test tooling: the worker runtime (app/runtime/) never imports it.
"""
