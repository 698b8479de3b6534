"""The reliability suite runs on the integration tests' embedded stack (one broker, one Redis per session)."""

from tests.integration.conftest import broker, kafka_stack, stack, tansu_stack

__all__ = ["broker", "kafka_stack", "stack", "tansu_stack"]
