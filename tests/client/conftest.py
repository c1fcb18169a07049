"""The client's end-to-end tests use the real server fixtures."""

from tests.server.conftest import alice, live_server

__all__ = ["alice", "live_server"]
