"""What Server and Client share: access rules, durations, log forwarding, the asyncio bridge."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _native

_logger = logging.getLogger("linksocks_rs")

DurationLike = Union[int, float, timedelta, str]

LinkSocksError = _native.LinkSocksError
AuthenticationError = _native.AuthenticationError
BindError = _native.BindError
ConnectError = _native.ConnectError


@dataclass
class AccessRule:
    """Single access control rule pairing address ranges with port ranges.

    All addresses in ``addrs`` are OR-ed together; the address must match AND one of the
    ``ports`` must match for the rule to allow a destination. Ports accept single numbers
    (``22``) or inclusive ``(start, end)`` ranges (``(90, 150)``); an empty list means any.

    ``entry_access_control=[AccessRule(addrs=["10.0.0.0/8"], ports=[22, (90, 150)])]``
    """

    addrs: List[str]
    ports: List[Union[int, Tuple[int, int]]] = field(default_factory=list)


@dataclass
class ReverseTokenResult:
    """Result of adding a reverse token."""

    token: str
    port: Optional[int]


def _rules_json(rules: Optional[List[AccessRule]]) -> Optional[str]:
    """Access rules in the JSON form the engine reads (the reference's HTTP API form)."""
    if rules is None:
        return None
    out: List[Dict[str, Any]] = []
    for rule in rules:
        if not isinstance(rule, AccessRule):
            raise TypeError(f"access rules must be AccessRule objects, not {type(rule).__name__}")
        ports: List[Any] = []
        for p in rule.ports:
            if isinstance(p, (tuple, list)):
                if len(p) != 2:
                    raise ValueError(f"a port range is (start, end), not {p!r}")
                ports.append([int(p[0]), int(p[1])])
            else:
                ports.append(int(p))
        out.append({"addrs": list(rule.addrs), "ports": ports})
    return json.dumps(out)


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Optional[DurationLike], what: str = "duration") -> Optional[float]:
    """A duration as seconds: a number of seconds, a timedelta, or a Go duration string
    (``"1.5s"``, ``"300ms"``, ``"1m30s"``), as the reference accepts."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a duration, not a bool")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for m in _GO_DURATION.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ValueError(f"Invalid duration string: {value}")
    else:
        raise TypeError(f"Unsupported duration type: {type(value)!r}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative: {value!r}")
    return seconds


# ---------------------------------------------------------------- logging

_tags = itertools.count(1)
_loggers: "weakref.WeakValueDictionary[int, logging.Logger]" = weakref.WeakValueDictionary()
_listener: Optional[threading.Thread] = None
_listener_lock = threading.Lock()
# The engine forwards records at this level and above: the lowest any instance's logger wants.
_native_level: Optional[int] = None


def _register_logger(logger: Optional[logging.Logger]) -> Tuple[int, logging.Logger]:
    """A tag for a new instance whose records go to ``logger``; starts the log listener."""
    global _listener, _native_level
    logger = logger or _logger
    tag = next(_tags)
    _loggers[tag] = logger
    with _listener_lock:
        level = _effective_level(logger)
        if _native_level is None or level < _native_level:
            _native_level = level
            _native.set_native_log_level(level)
        if _listener is None:
            _listener = threading.Thread(target=_listen, name="linksocks_rs-log", daemon=True)
            _listener.start()
    return tag, logger


def _effective_level(logger: logging.Logger) -> int:
    level = logger.getEffectiveLevel()
    return level if level > 0 else logging.WARNING


def _listen() -> None:
    while True:
        records, dropped = _native.next_records(200)
        if dropped:
            _logger.warning("%d log records of the engine were dropped (logging too slow)", dropped)
        for tag, level, target, message in records:
            logger = _loggers.get(tag, _logger)
            if logger.isEnabledFor(level):
                logger.log(level, "%s", message, extra={"linksocks_target": target})


def set_log_level(level: Union[int, str]) -> None:
    """Set the global log level for linksocks_rs (its logger and the engine's records)."""
    global _native_level
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    _logger.setLevel(level)
    with _listener_lock:
        _native_level = int(level)
        _native.set_native_log_level(int(level))


# ---------------------------------------------------------------- asyncio bridge


def _settle(fut: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def _awaitable(start: Callable[[Callable[[Any, Any], None]], None]) -> "asyncio.Future[Any]":
    """A future of the running loop that the engine completes: ``start(done)`` hands the
    engine a callback it calls from its own thread when the work is done."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(value: Any, error: Optional[BaseException]) -> None:
        try:
            loop.call_soon_threadsafe(_settle, fut, value, error)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    start(done)
    return fut
