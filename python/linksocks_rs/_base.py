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


def _timeout(value: Optional[DurationLike]) -> Optional[float]:
    """A wait's limit in seconds: ``None`` and 0 mean none, as the reference reads them."""
    seconds = _seconds(value, "timeout")
    return seconds if seconds else None


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


def _sync_level() -> None:
    """The engine's level follows the loggers: the lowest any live instance's logger wants
    now (a ``logging.basicConfig`` or ``setLevel`` after the instance was made counts)."""
    global _native_level
    levels = [_effective_level(lg) for lg in list(_loggers.values())]
    level = min(levels, default=_effective_level(_logger))
    with _listener_lock:
        if level != _native_level:
            _native_level = level
            _native.set_native_log_level(level)


def _listen() -> None:
    while True:
        _sync_level()
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


class _Lifecycle:
    """Starting, waiting, closing and the context managers, the same for Server and Client:
    ``self._native`` is the engine's object, ``self._what`` names it in errors."""

    _native: Any
    _what: str

    def wait_ready(self, timeout: Optional[DurationLike] = None) -> None:
        """Start (if not yet) and wait until ready; ``TimeoutError`` when ``timeout`` runs
        out (``None`` or 0: no limit, as the reference), the engine's error (``BindError``,
        ``AuthenticationError``, ...) otherwise."""
        if not self._native.wait_ready(_timeout(timeout)):
            raise TimeoutError(f"the {self._what} was not ready in time")

    async def async_wait_ready(self, timeout: Optional[DurationLike] = None) -> None:
        """``wait_ready`` without blocking the event loop; cancelling it closes the
        instance, as the reference does."""
        seconds = _timeout(timeout)
        try:
            await _awaitable(lambda done: self._native.wait_ready_async(done, seconds))
        except asyncio.CancelledError:
            self._native.close_nowait()
            raise

    def close(self) -> None:
        """Stop and release the ports. Calling it again is harmless."""
        self._native.close()

    async def async_close(self) -> None:
        """``close`` without blocking the event loop."""
        await _awaitable(self._native.close_async)

    def __enter__(self) -> Any:
        self.wait_ready()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        await self.async_wait_ready()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.async_close()

    def __del__(self) -> None:
        # Collected without close(): stop, without waiting (a finaliser must not block).
        native = getattr(self, "_native", None)
        if native is not None:
            native.close_nowait()
