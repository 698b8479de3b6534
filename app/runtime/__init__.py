"""The worker runtime: the Faust app, settings, table bindings, web, metrics, lifecycle, Redis sink,
Kafka transport, health, shutdown and supervision.

Everything here does I/O or binds to the environment; the pure stages it runs live in the
domain packages (app.events, app.ingest, app.identity, ...) and the state layer in ``tables/``.
Importing this package builds nothing: app.runtime.faust_app builds the Faust app when imported.
"""
