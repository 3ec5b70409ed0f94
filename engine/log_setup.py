"""Logging of commands and workers: Declic's own lines; libraries only when debugging."""

from __future__ import annotations

import logging

# The Kafka client logs every failed connection and leader election at ERROR, before
# Declic retries or reports it in one line of its own.
QUIET_LIBRARIES = ("aiokafka", "kafka")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OnlyCritical(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL


_ONLY_CRITICAL = _OnlyCritical()


def quiet_libraries(level: str) -> None:
    """Drop the Kafka client's log records below CRITICAL, unless `level` is DEBUG.

    Records are still created, so filters watching them (engine.retry reads the cause of
    a refused connection from them) see every one; only their printing is dropped.
    """
    import aiokafka
    import aiokafka.admin  # noqa: F401

    import engine.retry  # noqa: F401  -- its watch must see records before they are dropped

    loggers = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] in QUIET_LIBRARIES
    ]
    for logger in loggers:
        if level.upper() == "DEBUG":
            logger.removeFilter(_ONLY_CRITICAL)
        else:
            logger.addFilter(_ONLY_CRITICAL)


def configure_command_logging(level: str) -> None:
    """Log Declic's messages at `level` to stderr; the libraries' only when debugging."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    quiet_libraries(level)
