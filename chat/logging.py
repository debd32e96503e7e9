"""Structured logging: JSON lines in production, readable lines in development.

Context (request id, conversation id, message id) is bound through contextvars so every line
written while handling a message carries it. Message bodies and secrets are never logged at info.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(log_format: str, level: str, cache_loggers: bool = True) -> None:
    """`cache_loggers`: each module's logger is built once, at its first line (fast); tests turn it
    off, so a configuration made later (to capture lines) reaches every logger."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache_loggers,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
