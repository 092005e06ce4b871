# -*- test-case-name: tests.loopback.test_spool -*-
"""
The event spool and the memory of forwarded events, on disk, with real
C{uhppoted-tunnel} processes: checked before anything listens, private,
and damaged files reported while the tunnel runs on.
"""

import datetime
import errno
import os
import re
import stat
import struct
import subprocess
import time
from unittest import SkipTest

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.processes import (
    emulator_sent_line,
    free_port,
    start_event_emulator,
    stop,
    wait_for_lines,
    workdir,
)
from tests.loopback.eventpairs import (
    RECEIVED,
    A,
    EventTunnels,
    seen_ids,
    stream_connected,
    stream_listening,
)
from uhppoted_tunnel.emulator import Controller
from uhppoted_tunnel.core.events import EventBuffer


class SpoolTests(EventTunnels, TestCase):
    timeout = 120

    @inlineCallbacks
    def test_unwritableSpool(self):
        """
        A site whose spool folder cannot be written exits 2 at once with
        one line naming C{--event-spool}, before anything listens.
        """
        blocker = os.path.join(workdir(self), "file")
        open(blocker, "w").close()
        spool = os.path.join(blocker, "site")
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(free_port()), "--event-spool", spool)
        code = yield site.exited()
        self.assertEqual(code, 2, site.output())
        self.assertEqual(site.output(2), "uhppoted-tunnel: --event-spool {}: {} is not a folder".format(
            spool, blocker))
        self.assertNotIn("listening", site.output())

    @inlineCallbacks
    def test_spoolPrivate(self):
        """
        The events a site keeps at a clean stop are in a file of mode 0600.
        """
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(free_port()), "--debug")
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, 3, "5ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(3))
        yield wait_for_lines(site, RECEIVED, 3)
        code = yield stop(site)
        self.assertEqual(code, 0, site.recent())
        path = self.spool("site") + ".events"
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    @inlineCallbacks
    def test_truncatedSeen(self):
        """
        A host whose C{.seen} file was cut short says what it kept and what
        it discarded, keeps a copy of the damaged file, and runs on: every
        event sent to it arrives.
        """
        path = self.spool("host") + ".seen"
        other = b"\x07" * 16
        with open(path, "wb") as f:
            f.write(b"UHTSEEN2" + struct.pack("<16sI", other, 1) + struct.pack("<16sI", other, 2) + b"\x01\x02\x03")
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        yield host.waitFor(re.escape(path) + r" was damaged: kept 2 forwarded event\(s\), discarded 0 invalid "
                           r"record\(s\) and 3 trailing byte\(s\); the damaged file is kept as "
                           + re.escape(path + ".damaged"))
        site = yield self.go_site(stream_port)
        controller = Controller(A)
        now = datetime.datetime.now()
        site.transport.write(b"".join(go_packetize(i, controller.event(now)) for i in range(1, 21)))
        site.transport.write(go_packetize(21, self.last.event(now)))
        yield self.events.waitForKey((self.last.serial, self.last.event_index))
        self.assertEventsInOrder(range(1, 21))
        self.assertTrue(os.path.exists(path + ".damaged"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    @inlineCallbacks
    def test_truncatedSpool(self):
        """
        A site whose spool was cut short loads the events before the cut,
        says what it discarded, keeps the damaged file, and delivers the
        events it kept once the host is up.
        """
        path = self.spool("site") + ".events"
        buffer = EventBuffer(time.time)
        controller = Controller(A)
        now = datetime.datetime.now()
        for n in range(1, 11):
            buffer.add(n, controller.event(now))
        buffer.spool(path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 30)
        stream_port = free_port()
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(re.escape(path) + r" was damaged: kept the 9 undelivered event\(s\) before the damage")
        site_port = yield self.site_port(site)
        self.host("tcp/server:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        yield self.events.waitForKey((A, 9))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, 10))
        self.assertTrue(os.path.exists(path + ".damaged"))

    @inlineCallbacks
    def test_spoolFailsAtStop(self):
        """
        A site that cannot write its spool when it stops says how many
        events it could not keep and exits non-zero.
        """
        folder = os.path.join(workdir(self), "spool")
        os.makedirs(folder)
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(free_port()), "--debug", "--event-spool",
                         os.path.join(folder, "site"))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, 3, "5ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(3))
        yield wait_for_lines(site, RECEIVED, 3)
        os.rmdir(folder)
        open(folder, "w").close()
        code = yield stop(site)
        self.assertIn("could not keep 3 undelivered event(s) in {}: Not a directory".format(
            os.path.join(folder, "site.events")), site.output())
        self.assertNotEqual(code, 0, site.recent())
        self.assertNotIn("Traceback", site.output())


class FullDiskTests(EventTunnels, TestCase):
    """
    A receiving half whose state folder fills up while events flow (issue
    25, item 1): a real tmpfs, filled midway and freed.
    """

    timeout = 180

    def tmpfs(self, size="64k"):
        """
        Mount a small tmpfs for the test (root only), unmounted in cleanup.
        """
        if os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs needs root: the full-disk run is skipped")
        folder = os.path.join(workdir(self), "state")
        os.makedirs(folder)
        if subprocess.call(["mount", "-t", "tmpfs", "-o", "size=" + size + ",mode=0700", "tmpfs", folder]) != 0:
            raise SkipTest("cannot mount a tmpfs here: the full-disk run is skipped")
        self.addCleanup(subprocess.call, ["umount", "-l", folder])
        return folder

    @staticmethod
    def fill(folder):
        """
        Fill a folder's file system: write a filler file until C{ENOSPC}.
        """
        filler = os.path.join(folder, "filler")
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 1024)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
        return filler

    @inlineCallbacks
    def test_diskFillsMidway(self):
        """
        1,000 events through a host whose C{.seen} file cannot grow from
        about the 300th to the 700th: one ERROR naming the file and what to
        do, no traceback, the link kept, every event delivered once and in
        order, the file written again with every event once there is room,
        and a clean exit.
        """
        count = 1000
        folder = self.tmpfs()
        host = self.host("tcp/server:127.0.0.1:0", "--event-spool", os.path.join(folder, "host"))
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        started = time.monotonic()
        emulator, _ = yield start_event_emulator(self, site_port, count, "5ms", serials=[A])
        yield self.events.waitForCount(300)
        filler = self.fill(folder)
        yield host.waitFor(r"could not record forwarded events in .*host\.seen: No space left on device")
        filled_at = len(self.events.keys)
        yield self.events.waitForCount(700)
        os.remove(filler)
        freed_at = len(self.events.keys)
        yield emulator.waitFor(emulator_sent_line(count))
        yield self.events.waitForKey((A, count))
        elapsed = time.monotonic() - started
        yield host.waitFor(r"host\.seen can be written again")
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, count + 1))
        code = yield stop(host)
        self.assertEqual(code, 0, host.recent())
        self.assertEqual(seen_ids(os.path.join(folder, "host.seen")) >= set(range(1, count + 1)), True)
        for half in (site, host):
            self.assertNotIn("Traceback", half.output())
        self.assertEqual(host.output().count("could not record forwarded events"), 1)
        self.assertEqual(len(re.findall(r"\bTCP\s+connected to", site.output())), 1, "the link was kept")
        print("\nfull disk: {} events delivered of {}, in {:.1f}s; disk full from event {} to {}".format(
            len(self.events.of(A)), count, elapsed, filled_at, freed_at))
