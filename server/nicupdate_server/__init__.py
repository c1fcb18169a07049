"""nicupdate server: a dyndns2 update endpoint with its own authoritative DNS."""

__version__ = "0.1.0"
