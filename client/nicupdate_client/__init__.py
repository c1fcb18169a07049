"""nicupdate client: keeps a host's address up to date on a nicupdate (dyndns2) server."""

__version__ = "0.1.0"
