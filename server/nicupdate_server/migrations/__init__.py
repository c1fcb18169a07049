"""Alembic migrations. ``python -m nicupdate_server.migrations`` upgrades to head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["url"] = url
    return config
