# -*- test-case-name: tests.unit.test_logging -*-
"""
Tests for L{uhppoted_tunnel.app.logging}: the Go console layout.
"""

import io
import json
import time

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogBeginner,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.app.logging import (
    ConsoleObserver,
    JSONObserver,
    parse_level,
    start_logging,
)
from uhppoted_tunnel.core.packets import hexdump

NOW = 1674040015.75
"""A fixed time for the observer's clock."""

STAMP = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(NOW))
"""L{NOW} as the console shows it, in this machine's time zone."""

CLIENT_HELLO = bytes.fromhex(
    "16030100d2010000ce03030f71114f96"
    "919888ea4e4043fe32c11fa2a3539bdd"
    "227a5d1e896808e222883520"
)


class Tagged:
    """
    An object logging as the connectors do, with a class C{log_tag}.
    """

    log_tag = "TCP"
    log = Logger()


class Untagged:
    """
    An object logging without a C{log_tag}.
    """

    log = Logger()


class HexdumpTests(SynchronousTestCase):
    """
    L{hexdump} lays bytes out as Go's C{hex.Dump}, without the ASCII column.
    """

    def test_full_line(self):
        """
        16 bytes make one line: offset, two groups of 8, indented by 34.
        """
        self.assertEqual(
            hexdump(CLIENT_HELLO[:16]),
            " " * 34 + "00000000  16 03 01 00 d2 01 00 00  ce 03 03 0f 71 11 4f 96",
        )

    def test_lines(self):
        """
        Each 16 bytes start a new line with its offset; the last line is
        partial and has no trailing space.
        """
        self.assertEqual(
            hexdump(CLIENT_HELLO, indent=2).split("\n"),
            [
                "  00000000  16 03 01 00 d2 01 00 00  ce 03 03 0f 71 11 4f 96",
                "  00000010  91 98 88 ea 4e 40 43 fe  32 c1 1f a2 a3 53 9b dd",
                "  00000020  22 7a 5d 1e 89 68 08 e2  22 88 35 20",
            ],
        )

    def test_partial_first_group(self):
        """
        Fewer than 8 bytes fill part of the first group only.
        """
        self.assertEqual(hexdump(bytes.fromhex("8c047a51e26026"), indent=0),
                         "00000000  8c 04 7a 51 e2 60 26")

    def test_eight_bytes(self):
        """
        Exactly 8 bytes end without the gap before a second group.
        """
        self.assertEqual(hexdump(bytes(range(8)), indent=0),
                         "00000000  00 01 02 03 04 05 06 07")

    def test_empty(self):
        """
        No bytes, no lines, as in Go.
        """
        self.assertEqual(hexdump(b""), "")


class ParseLevelTests(SynchronousTestCase):
    """
    L{parse_level} reads C{--log-level} values.
    """

    def test_names(self):
        """
        The Go names are accepted in any case; warning means warn.
        """
        for text, level in [
            ("debug", LogLevel.debug), ("INFO", LogLevel.info),
            ("warn", LogLevel.warn), ("Warning", LogLevel.warn),
            ("error", LogLevel.error),
        ]:
            self.assertIs(parse_level(text), level)

    def test_invalid(self):
        """
        Anything else is a L{ValueError} listing the choices.
        """
        for text in ["verbose", "", "critical", None]:
            e = self.assertRaises(ValueError, parse_level, text)
            self.assertEqual(
                str(e),
                "invalid log level %r (expected debug, info, warn or error)"
                % (text,),
            )


class ConsoleObserverTests(SynchronousTestCase):
    """
    L{ConsoleObserver} writes events in the Go console layout.
    """

    def setUp(self):
        self.stream = io.StringIO()
        self.observer = ConsoleObserver(self.stream, now=lambda: NOW)
        self.publisher = LogPublisher(self.observer)

    def logger(self, source):
        """
        :param source: the class whose C{log} emits.
        :return: its L{Logger}, bound to an instance and the publisher.
        """
        return Logger(namespace="test", source=source(),
                      observer=self.publisher)

    def test_interface(self):
        """
        L{ConsoleObserver} is an L{ILogObserver}.
        """
        self.assertTrue(verifyObject(ILogObserver, self.observer))

    def test_layout(self):
        """
        A line is the local time, the level and the tag, each padded to 6
        and a space, then the message.
        """
        self.logger(Tagged).info("connected to {peer}", peer="127.0.0.1:12345")
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " INFO   TCP    connected to 127.0.0.1:12345\n")

    def test_no_tag(self):
        """
        With no C{log_tag} the tag column is blank.
        """
        self.logger(Untagged).warn("invalid packet - got {n} bytes", n=215)
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " WARN          invalid packet - got 215 bytes\n")

    def test_event_tag(self):
        """
        A C{log_tag} in the event itself is used when the source has none.
        """
        self.logger(Untagged).info("closing", log_tag="ROUTER")
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " INFO   ROUTER closing\n")

    def test_long_tag(self):
        """
        A tag longer than 6 (C{METRICS}) is trimmed to 6, so that the
        messages stay in one column.
        """
        self.logger(Untagged).info("up", log_tag="METRICS")
        self.assertEqual(self.stream.getvalue(), STAMP + " INFO   METRIC up\n")

    def test_level_names(self):
        """
        Levels are named as Go names them; critical is FATAL.
        """
        log = self.logger(Tagged)
        for emit in [log.debug, log.info, log.warn, log.error, log.critical]:
            emit("x")
        self.assertEqual(
            [line[20:27] for line in self.stream.getvalue().splitlines()],
            ["DEBUG  ", "INFO   ", "WARN   ", "ERROR  ", "FATAL  "],
        )

    def test_legacy_event(self):
        """
        An event with no level, as from legacy Twisted code, is info.
        """
        self.observer({"log_format": "legacy {x}", "x": 1})
        self.assertEqual(self.stream.getvalue(), STAMP + " INFO          legacy 1\n")

    def test_continuation(self):
        """
        Lines after the first in a message, such as a hex dump, follow as
        given.
        """
        self.logger(Tagged).debug(
            "received {n} bytes from {peer}\n{dump()}", n=16,
            peer="127.0.0.1:50568", dump=lambda: hexdump(CLIENT_HELLO[:16]))
        self.assertEqual(
            self.stream.getvalue(),
            STAMP + " DEBUG  TCP    received 16 bytes from 127.0.0.1:50568\n"
            "                                  "
            "00000000  16 03 01 00 d2 01 00 00  ce 03 03 0f 71 11 4f 96\n",
        )

    def test_failure(self):
        """
        A failure is one line: the message, then the error's message; no
        traceback.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            self.logger(Tagged).failure("relay failed", level=LogLevel.error)
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " ERROR  TCP    relay failed: division by zero\n")

    def test_failure_critical(self):
        """
        C{log.failure}'s default level, critical, shows as FATAL.
        """
        self.logger(Tagged).failure("unhandled", Failure(OSError("gone")))
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " FATAL  TCP    unhandled: gone\n")

    def test_failure_traceback(self):
        """
        With C{tracebacks=True} the traceback follows a failure.
        """
        self.observer = ConsoleObserver(self.stream, now=lambda: NOW,
                                        tracebacks=True)
        self.publisher = LogPublisher(self.observer)
        try:
            1 / 0
        except ZeroDivisionError:
            self.logger(Tagged).failure("relay failed", level=LogLevel.error)
        lines = self.stream.getvalue().splitlines()
        self.assertEqual(lines[0],
                         STAMP + " ERROR  TCP    relay failed: division by zero")
        self.assertEqual(lines[1], "Traceback (most recent call last):")
        self.assertIn("ZeroDivisionError", lines[-1])

    def test_failure_multiline_error(self):
        """
        An error message that spans lines is joined into one.
        """
        failure = Failure(ValueError("first\nsecond"))
        self.logger(Tagged).failure("bad", failure, LogLevel.error)
        self.assertEqual(self.stream.getvalue(),
                         STAMP + " ERROR  TCP    bad: first second\n")

    def test_flushes(self):
        """
        Every event is flushed at once.
        """
        flushes = []
        self.stream.flush = lambda: flushes.append(True)
        self.logger(Tagged).info("a")
        self.logger(Tagged).info("b")
        self.assertEqual(len(flushes), 2)

    def test_filter(self):
        """
        Behind a L{FilteringLogObserver} at warn, info is dropped and warn
        kept.
        """
        publisher = LogPublisher(FilteringLogObserver(
            self.observer,
            [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]))
        log = Logger(namespace="test", source=Tagged(), observer=publisher)
        log.info("dropped")
        log.warn("kept")
        self.assertEqual(self.stream.getvalue(), STAMP + " WARN   TCP    kept\n")


class StartLoggingTests(SynchronousTestCase):
    """
    L{start_logging} begins logging to the console, filtered by level.
    """

    def beginner(self):
        """
        :return: a new L{LogBeginner} and its publisher.
        """
        publisher = LogPublisher()
        errors = io.StringIO()
        stdio = type("stdio", (), {"stdout": None, "stderr": None})()
        warnings = type("warnings", (), {"showwarning": None})()
        return LogBeginner(publisher, errors, stdio, warnings), publisher

    def test_filtered(self):
        """
        Events below the level are dropped, buffered ones included.
        """
        beginner, publisher = self.beginner()
        log = Logger(namespace="test", source=Tagged(), observer=publisher)
        log.info("before, dropped")
        log.error("before, kept")
        stream = io.StringIO()
        start_logging(LogLevel.warn, stream, beginner=beginner)
        log.info("after, dropped")
        log.warn("after, kept")
        self.assertEqual(
            [line[20:] for line in stream.getvalue().splitlines()],
            ["ERROR  TCP    before, kept", "WARN   TCP    after, kept"],
        )

    def test_once(self):
        """
        A second call does nothing, so events are not written twice.
        """
        beginner, publisher = self.beginner()
        stream = io.StringIO()
        start_logging(LogLevel.info, stream, beginner=beginner)
        start_logging(LogLevel.info, stream, beginner=beginner)
        Logger(namespace="uhppoted_tunnel.test", observer=publisher).info("once")
        self.assertEqual(len(stream.getvalue().splitlines()), 1)


class QuietTwistedTests(SynchronousTestCase):
    def test_twistedInfoHidden(self):
        """
        Twisted's own informational messages are dropped unless the level is
        debug; its warnings and our own messages pass.
        """
        from twisted.logger import PredicateResult

        from uhppoted_tunnel.app.logging import quiet_twisted

        info = quiet_twisted(LogLevel.info)
        debug = quiet_twisted(LogLevel.debug)
        chatter = {"log_namespace": "log_legacy", "log_level": LogLevel.info}
        retry = {"log_namespace": "twisted.application.internet.ClientService", "log_level": LogLevel.info}
        warning = {"log_namespace": "log_legacy", "log_level": LogLevel.warn}
        ours = {"log_namespace": "uhppoted_tunnel.core.router.Router", "log_level": LogLevel.info}
        self.assertEqual(info(chatter), PredicateResult.no)
        self.assertEqual(info(retry), PredicateResult.no)
        self.assertEqual(info(warning), PredicateResult.maybe)
        self.assertEqual(info(ours), PredicateResult.maybe)
        self.assertEqual(debug(chatter), PredicateResult.maybe)


class JSONObserverTests(SynchronousTestCase):
    """
    L{JSONObserver} writes one JSON object per line.
    """

    def setUp(self):
        self.stream = io.StringIO()
        self.observer = JSONObserver(self.stream, now=lambda: NOW)
        self.log = Logger(namespace="uhppoted_tunnel.test", source=Tagged(), observer=LogPublisher(self.observer))

    def lines(self):
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def test_interface(self):
        verifyObject(ILogObserver, self.observer)

    def test_record(self):
        """
        A line has the time (ISO 8601, UTC), level, namespace, tag, the
        formatted message and the event's own fields.
        """
        self.observer({"log_time": NOW, "log_level": LogLevel.info, "log_namespace": "uhppoted_tunnel.test",
                       "log_source": Tagged(), "log_format": "connected to {peer}", "peer": "127.0.0.1:1"})
        [record] = self.lines()
        self.assertEqual(record, {"time": "2023-01-18T11:06:55.750000+00:00", "level": "info",
                                  "namespace": "uhppoted_tunnel.test", "tag": "TCP",
                                  "message": "connected to 127.0.0.1:1", "peer": "127.0.0.1:1"})

    def test_oneLine(self):
        """
        A message of several lines (a hex dump) is still one line of JSON.
        """
        self.log.debug("received\n{dump}", dump=hexdump(CLIENT_HELLO))
        self.assertEqual(len(self.stream.getvalue().splitlines()), 1)
        self.assertIn("00000000  16 03 01", self.lines()[0]["message"])

    def test_awkwardFields(self):
        """
        Fields JSON cannot hold are written as text (bytes as hex), a
        deferred hex dump (a callable) is left out, and a field named like
        one of the line's own keys is renamed; nothing raises.
        """
        self.log.warn("odd", data=b"\x01\x02", thing=object(), dump=lambda: "x", time=3, tags={"a"})
        [record] = self.lines()
        self.assertEqual(record["data"], "0102")
        self.assertTrue(record["thing"].startswith("<object object"))
        self.assertNotIn("dump", record)
        self.assertEqual(record["field_time"], 3)
        self.assertEqual(record["tags"], ["a"])
        self.assertEqual(record["message"], "odd")

    def test_unserialisable(self):
        """
        A field that cannot be written at all (a circular structure, NaN)
        costs the fields, not the line.
        """
        loop = []
        loop.append(loop)
        self.log.error("still {n}", n=1, loop=loop)
        self.log.info("nan", value=float("nan"))
        first, second = self.lines()
        self.assertEqual((first["message"], first["level"]), ("still 1", "error"))
        self.assertNotIn("loop", first)
        self.assertEqual(second["message"], "nan")

    def test_failure(self):
        """
        A failure's message is the line's C{error}.
        """
        self.log.failure("lost", Failure(ValueError("bad\nthing")))
        [record] = self.lines()
        self.assertEqual((record["level"], record["message"], record["error"]), ("critical", "lost", "bad thing"))

    def test_started(self):
        """
        start_logging with C{log_format="json"} writes JSON lines.
        """
        publisher = LogPublisher()
        beginner = LogBeginner(publisher, io.StringIO(), type("stdio", (), {"stdout": None, "stderr": None})(),
                               type("warnings", (), {"showwarning": None})())
        stream = io.StringIO()
        start_logging(LogLevel.info, stream, beginner=beginner, log_format="json")
        Logger(namespace="uhppoted_tunnel.test", observer=publisher).info("hello")
        self.assertEqual(json.loads(stream.getvalue())["message"], "hello")
