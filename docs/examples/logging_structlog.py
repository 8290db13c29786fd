"""structlog rendering the library's standard-library records, fields included."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(stream: object = sys.stderr, level: int = logging.INFO) -> None:
    """chatsvg_core's records as JSON through structlog's ProcessorFormatter."""
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from the standard library (chatsvg_core's) go through these first:
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),  # job_id, owner, attempt, chatsvg_event...
            structlog.processors.TimeStamper(fmt="iso"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),  # or structlog.dev.ConsoleRenderer()
        ],
    )
    handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(formatter)
    library = logging.getLogger("chatsvg_core")
    library.addHandler(handler)
    library.setLevel(level)
