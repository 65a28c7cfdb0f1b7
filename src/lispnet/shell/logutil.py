"""Logging helpers: setup, and rate-limited logging for things peers can trigger.

A hostile or misconfigured peer must not be able to flood the log: every message caused
by received traffic (a rejected Map-Register, a malformed datagram) goes through a
:class:`RateLimitedLog`.  Messages are grouped by a *key* chosen by the caller (e.g.
``("reject", site, reason)``); each key may log ``burst`` lines per ``interval_s``
seconds, further lines are counted and the count is reported with the next line that
gets through ("... (17 similar suppressed)").  The number of keys tracked is bounded.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str | int = "info", stream: object = None) -> None:
    """Configure the root logger once for a daemon process (stderr, one line per record)."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_lispnet", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._lispnet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(lvl)
    # uvicorn's access log would log every API call at INFO; keep it quieter
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


@dataclass(slots=True)
class _Bucket:
    window_start: float
    count: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """Per-key rate limiting in front of a :class:`logging.Logger`."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 5,
        interval_s: float = 10.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self.suppressed_total = 0
        """Lines not logged because of the limit (all keys)."""

    def log(self, key: Hashable, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` unless ``key`` is over its budget.  Returns True if logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(now)
            self._buckets[key] = b
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            if now - b.window_start >= self.interval_s:
                b.window_start = now
                b.count = 0
        if b.count >= self.burst:
            b.suppressed += 1
            self.suppressed_total += 1
            return False
        b.count += 1
        if b.suppressed:
            msg = msg + " (%d similar suppressed)"
            args = (*args, b.suppressed)
            b.suppressed = 0
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def info(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(key, logging.INFO, msg, *args)

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(key, logging.WARNING, msg, *args)

    def error(self, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(key, logging.ERROR, msg, *args, exc_info=exc_info)

    def debug(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(key, logging.DEBUG, msg, *args)


__all__ = ["LOG_FORMAT", "RateLimitedLog", "setup_logging"]
