"""The serving layout, pure: the Redis keys and hash fields each stage's table values are served as.

:mod:`app.serving.keys`
    Every key family (``persona:activity:…``, ``persona:profile:…``, ``persona:segment:…`` …) and
    the entries of each table value; the agents and ``persona rebuild-redis`` both use it. The
    writer that sends them to Redis is the runtime's (app/runtime/redis_sink.py).
"""
