"""The process shell of both daemons: logging, signals, memory.

The node agent and the aggregator are both small daemons with the same shell: log lines
in one format (text, or JSON objects for a log pipeline) at a level from a flag,
SIGTERM/SIGINT turned into an orderly stop, and
freed memory handed back to the system from their housekeeping.  Written once, so the
two behave alike and a fix to one is a fix to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from enum import StrEnum

from calico_accountant.runtime.heap import collect_unfrozen
from calico_accountant.runtime.memory import trim

__all__ = ["LOG_FORMAT", "LogFormat", "configure_logging", "release_free_memory", "stop_on_signals"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    """``--log-format``: lines for people, or one JSON object per line for a log pipeline."""

    TEXT = "text"
    JSON = "json"


def configure_logging(level: str | int, log_format: LogFormat | str = LogFormat.TEXT) -> None:
    """Log to stderr; ``level`` is a name (``info``, ``DEBUG``, any case) or a number.

    The flags' parser has already refused an unknown level or format (a typo must be
    seen at start, not silently become INFO); a name that still is unknown here is a
    programming error and raises :class:`ValueError`.  JSON lines carry ``time``,
    ``level``, ``logger`` and ``message`` (and ``exc_info`` for a traceback), through
    python-json-logger."""
    if isinstance(level, str):
        known = logging.getLevelNamesMapping()
        if level.upper() not in known:
            raise ValueError(f"unknown log level {level!r}")
        level = known[level.upper()]
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(LogFormat(log_format)))
    logging.basicConfig(level=level, handlers=[handler])


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format is LogFormat.TEXT:
        return logging.Formatter(LOG_FORMAT)
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )


def release_free_memory(*, collect_cycles: bool = False) -> bool:
    """Hand the heap's free pages back to the operating system (glibc's ``malloc_trim``),
    after a collection of the unfrozen heap when ``collect_cycles``
    (:func:`~calico_accountant.runtime.heap.collect_unfrozen`: milliseconds, however big
    the frozen state).

    A burst of large, short-lived allocations (a big snapshot decoded, a hostile stream's
    chunks refused) leaves glibc's arenas holding freed memory that never shows as free
    again: resident memory looks like a leak and nears the pod's limit.  And gRPC's
    asyncio server keeps an ended call's last messages in a reference cycle, which only a
    collection frees; a daemon that allocates few Python objects runs one rarely.
    Called from housekeeping, this keeps resident memory at what is really in use.
    Returns False where there is no glibc (only the collection was done)."""
    if collect_cycles:
        collect_unfrozen()
    return trim()


def stop_on_signals(*signals: signal.Signals) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (or ``signals``); call it in the running loop.

    Kubernetes stops a pod with SIGTERM, a terminal with SIGINT: both become the same
    orderly shutdown instead of an exception somewhere in the middle of the work.  Where
    the loop has no signal handlers (Windows) the event is only set by whoever holds it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals or (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop
