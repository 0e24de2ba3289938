"""The library's integration tests use the shared harness."""

from tests.support.harness import harness  # noqa: F401
