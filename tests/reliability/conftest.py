"""The reliability suite runs on the integration tests' embedded stack (one broker, one Redis per session)."""

from tests.integration.conftest import stack

__all__ = ["stack"]
