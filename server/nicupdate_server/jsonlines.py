"""JSON log lines (``server.log_format = "json"``): the fields are listed in
:mod:`.logformat`. Imported only when that format is chosen."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "uvicorn.access"
FIELDS = (
    "time",
    "level",
    "logger",
    "event",
    "host",
    "caller",
    "answer",
    "peer",
    "method",
    "path",
    "status",
    "request_id",
    "worker",
    "exception",
    "stack",
)


class JsonLines(JsonFormatter):
    """One JSON object per record, with the fields :mod:`.logformat` lists, in order."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={
                "levelname": "level",
                "name": "logger",
                "message": "event",
                "exc_info": "exception",
                "stack_info": "stack",
            },
            reserved_attrs=RESERVED_ATTRS,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        created = datetime.fromtimestamp(record.created, UTC)
        log_data["time"] = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        log_data["level"] = record.levelname.lower()
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's: peer, method, path (masked by app.MaskSecrets), version, status
            log_data.update(peer=args[0], method=args[1], path=args[2], status=args[4])

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: log_data[key] for key in FIELDS if key in log_data}
