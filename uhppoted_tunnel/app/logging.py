# -*- test-case-name: tests.unit.test_logging -*-
"""
The Go uhppoted-tunnel console log layout, as a L{twisted.logger} observer.

A line is the local time, the level padded to 6, the emitting class's
C{log_tag} padded (or trimmed) to 6 and the message; lines after the first in a message
(hex dumps) are written as given::

    2023/01/18 12:06:55 DEBUG  TCP    received 215 bytes from 127.0.0.1:50568
                                      00000000  16 03 01 00 d2 01 00 00  ...

With C{--log-format json}, L{JSONObserver} writes one JSON object per line
instead, for log shippers: C{time} (ISO 8601, UTC), C{level}, C{namespace},
C{tag}, C{message} (the formatted text), C{error} for a failure, and the
event's own fields::

    {"time": "2026-11-28T20:30:00.123456+00:00", "level": "info", "namespace":
     "uhppoted_tunnel.link.ends.ServerEnd", "tag": "TCP", "message":
     "listening on 127.0.0.1:12345", "address": "127.0.0.1:12345"}
"""

import datetime
import json
import sys
import time

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
}

_NAMES = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARN",
    LogLevel.error: "ERROR",
    LogLevel.critical: "FATAL",
}


def parse_level(text):
    """
    :param text: C{debug}, C{info}, C{warn} (or C{warning}) or C{error}, in
        any case.
    :return: the L{LogLevel} named.
    :raise ValueError: for any other name.
    """
    try:
        return _LEVELS[text.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            "invalid log level %r (expected debug, info, warn or error)"
            % (text,)
        ) from None


@implementer(ILogObserver)
class ConsoleObserver:
    """
    Writes events to a text stream in the Go console layout.

    :param stream: a text stream, flushed after each event.
    :param now: returns the current time in seconds since the epoch.
    :param tracebacks: whether failures are followed by their traceback;
        by default a failure is one line ending with its error message.
    """

    def __init__(self, stream, now=time.time, tracebacks=False):
        self._stream = stream
        self._now = now
        self._tracebacks = tracebacks

    def __call__(self, event):
        """
        Write one event.

        :param event: a L{twisted.logger} event.
        """
        level = event.get("log_level", LogLevel.info)
        name = _NAMES.get(level) or getattr(level, "name", "INFO").upper()
        tag = getattr(event.get("log_source"), "log_tag", None)
        if tag is None:
            tag = event.get("log_tag") or ""
        message = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            error = " ".join(failure.getErrorMessage().splitlines())
            message = message + ": " + error if message else error
            if self._tracebacks:
                message += "\n" + failure.getTraceback().rstrip("\n")
        when = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(self._now()))
        # tags padded and trimmed to one width, so that the messages line up
        self._stream.write("%s %-6s %-6.6s %s\n" % (when, name, tag, message))
        self._stream.flush()


#: The keys L{JSONObserver} writes itself; an event's own field of the
#: same name is written as C{field_NAME}.
_RESERVED = frozenset(["time", "level", "namespace", "tag", "message", "error"])


def _plain(value):
    """
    A JSON-able form of a field's value: bytes as hex, sets as lists,
    anything else JSON cannot hold as its C{str()} (or, if that fails, its
    type's name).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset)):
        return list(value)
    try:
        return str(value)
    except Exception:
        return "<{}>".format(type(value).__name__)


@implementer(ILogObserver)
class JSONObserver:
    """
    Writes events to a text stream as one JSON object per line.

    :param stream: a text stream, flushed after each event.
    :param now: the current time, for events that carry none.
    """

    def __init__(self, stream, now=time.time):
        self._stream = stream
        self._now = now

    def record(self, event):
        """
        :return: the dict written for an event: C{(own keys, its fields)}.
        """
        level = event.get("log_level", LogLevel.info)
        tag = getattr(event.get("log_source"), "log_tag", None)
        if tag is None:
            tag = event.get("log_tag") or ""
        stamp = event.get("log_time")
        if not isinstance(stamp, (int, float)):
            stamp = self._now()
        record = {
            "time": datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(timespec="microseconds"),
            "level": getattr(level, "name", str(level)),
            "namespace": event.get("log_namespace", ""),
            "tag": tag,
            "message": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = " ".join(failure.getErrorMessage().splitlines())
        fields = {}
        for key, value in event.items():
            if not isinstance(key, str) or key.startswith("log_") or callable(value):
                continue
            fields["field_" + key if key in _RESERVED else key] = value
        return record, fields

    def __call__(self, event):
        """
        Write one event, whatever its fields hold.
        """
        record, fields = self.record(event)
        try:
            line = json.dumps({**record, **fields}, default=_plain, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            # a circular or too deep value, NaN: the line still goes out,
            # without the fields
            line = json.dumps(record, default=_plain, ensure_ascii=False)
        self._stream.write(line + "\n")
        self._stream.flush()


#: C{--log-format} -> the observer class writing it.
FORMATS = {"text": ConsoleObserver, "json": JSONObserver}

_started = []


def quiet_twisted(level):
    """
    A filter predicate that shows Twisted's own informational chatter
    ("Starting protocol ...", "Scheduling retry ...") only at debug level;
    its warnings and errors always pass.

    :param level: the lowest level being written.
    """

    def predicate(event):
        if level <= LogLevel.debug or event.get("log_namespace", "").startswith("uhppoted_tunnel"):
            return PredicateResult.maybe
        if event.get("log_level", LogLevel.info) < LogLevel.warn:
            return PredicateResult.no
        return PredicateResult.maybe

    return predicate


def start_logging(level, stream=None, beginner=globalLogBeginner, log_format="text"):
    """
    Send log events at C{level} or above to the console, once per process;
    later calls do nothing.

    :param level: the lowest L{LogLevel} written.
    :param stream: the text stream written to, by default C{sys.stdout}.
    :param beginner: the L{twisted.logger.LogBeginner} to begin.
    :param log_format: C{text} (the Go console layout) or C{json} (one
        JSON object per line).
    """
    if beginner in _started:
        return
    _started.append(beginner)
    observer = FilteringLogObserver(
        FORMATS[log_format](stream or sys.stdout),
        [LogLevelFilterPredicate(defaultLogLevel=level), quiet_twisted(level)],
    )
    beginner.beginLoggingTo([observer], redirectStandardIO=False)
