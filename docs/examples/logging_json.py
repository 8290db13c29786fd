"""JSON log lines with the library's structured fields, with the standard library only."""

from __future__ import annotations

import json
import logging
import sys

# The attributes every LogRecord has; anything else on a record came from ``extra``.
STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # job_id, owner, attempt, chatsvg_event, chatsvg_*, retry_*
            **{k: v for k, v in vars(record).items() if k not in STANDARD},
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(stream: object = sys.stderr, level: int = logging.INFO) -> None:
    """Send chatsvg_core's records (and only those) as JSON lines to ``stream``."""
    handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(JSONFormatter())
    library = logging.getLogger("chatsvg_core")
    library.addHandler(handler)
    library.setLevel(level)
