# -*- test-case-name: tests.unit.test_events -*-
"""
Event tunnels that lose nothing: the sending half's buffer and the
receiving half's memory of what it has forwarded.

Controllers push status events (64 bytes, function 0x20, start byte 0x17,
or 0x19 from v6.62 firmware) with the controller's serial at bytes 4..7
and a rising event index at bytes 8..11, both little-endian.

On a stream, the receiving half acknowledges each event frame with an
empty frame carrying the same id (C{[00 00][id]}). The Go tunnel's event
senders read and discard whatever comes back, so the acknowledgement is
harmless to them; a Python sender whose peer never acknowledges anything
(a Go receiver) relays without acknowledgements, as the Go tunnel does.

Nothing here touches a socket or the reactor: time comes in as a callable.
"""

import os
import struct
from collections import OrderedDict

EVENT = 0x20
START = (0x17, 0x19)

#: The sending half holds at most this many events while its link is down.
DEFAULT_BUFFER = 10000
#: ... and none older than this (seconds).
DEFAULT_BUFFER_AGE = 24 * 3600.0
#: The receiving half remembers this many (serial, index) pairs.
DEFAULT_WINDOW = 10000

_SEEN = struct.Struct("<II")
_SPOOLED = struct.Struct("!dH")


def event_key(packet):
    """
    The controller serial and event index of an event packet.

    :param packet: any packet.
    :return: C{(serial, index)}, or C{None} for anything that is not
        recognisably an event (which is then relayed untouched and never
        de-duplicated).
    """
    if len(packet) != 64 or packet[1] != EVENT or packet[0] not in START:
        return None
    serial, index = _SEEN.unpack_from(packet, 4)
    if index == 0:
        return None
    return serial, index


class SeenEvents:
    """
    The (serial, index) pairs most recently forwarded, so that an event
    resent after a reconnect is not forwarded twice.

    With a path, every pair is also appended to a file (8 bytes each) and
    read back on start, so the memory survives a restart, even a SIGKILL.
    The file is rewritten when it holds twice the window.
    """

    def __init__(self, size=DEFAULT_WINDOW, path=None):
        """
        :param size: how many pairs to remember.
        :param path: the file to keep them in, or C{None}.
        """
        self.size = size
        self.path = path
        self._keys = OrderedDict()
        self._file = None
        self._records = 0
        if path is not None:
            self._load()
            self._file = open(path, "ab", buffering=0)

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        whole = len(data) - len(data) % _SEEN.size
        start = max(0, whole - self.size * _SEEN.size)
        for offset in range(start, whole, _SEEN.size):
            self._remember(_SEEN.unpack_from(data, offset))
        self._records = whole // _SEEN.size
        if self._records > 2 * self.size or whole != len(data):
            self._rewrite()

    def _remember(self, key):
        keys = self._keys
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self.size:
            keys.popitem(last=False)

    def _rewrite(self):
        temporary = self.path + ".tmp"
        with open(temporary, "wb") as f:
            f.write(b"".join(_SEEN.pack(*key) for key in self._keys))
        os.replace(temporary, self.path)
        self._records = len(self._keys)
        if self._file is not None:
            self._file.close()
            self._file = open(self.path, "ab", buffering=0)

    def __contains__(self, key):
        return key in self._keys

    def __len__(self):
        return len(self._keys)

    def add(self, key):
        """
        Remember a forwarded event.
        """
        self._remember(key)
        if self._file is not None:
            self._file.write(_SEEN.pack(*key))
            self._records += 1
            if self._records > 2 * self.size:
                self._rewrite()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class EventBuffer:
    """
    The sending half's events, in order: those not yet sent and those sent
    but not yet acknowledged.

    It holds at most C{limit} events and none older than C{max_age}
    seconds; past either limit the oldest go first, and are counted in
    C{lost}. Every operation on the path of an event (add, expire, send,
    acknowledge) costs in proportion to the events it touches, never to
    the events held.
    """

    def __init__(self, seconds, limit=DEFAULT_BUFFER, max_age=DEFAULT_BUFFER_AGE):
        """
        :param seconds: a callable giving the time.
        :param limit: the most events held.
        :param max_age: the oldest event held, in seconds.
        """
        self._seconds = seconds
        self.limit = limit
        self.max_age = max_age
        #: frame id -> [time received, payload, sent]
        self._entries = OrderedDict()
        #: the frame ids not yet sent on the current link, in order
        self._unsent = OrderedDict()
        self.lost = 0

    def __len__(self):
        return len(self._entries)

    def add(self, frame_id, payload, stamp=None):
        """
        Hold an event.

        :return: how many older events were dropped to make room.
        """
        entries = self._entries
        entries[frame_id] = [self._seconds() if stamp is None else stamp, payload, False]
        self._unsent[frame_id] = None
        dropped = 0
        while len(entries) > self.limit:
            oldest, _ = entries.popitem(last=False)
            self._unsent.pop(oldest, None)
            dropped += 1
        self.lost += dropped
        return dropped + self.expire()

    def expire(self):
        """
        Drop events older than C{max_age}.

        :return: how many were dropped.
        """
        cutoff = self._seconds() - self.max_age
        entries = self._entries
        dropped = 0
        while entries:
            oldest = next(iter(entries))
            if entries[oldest][0] >= cutoff:
                break
            del entries[oldest]
            self._unsent.pop(oldest, None)
            dropped += 1
        self.lost += dropped
        return dropped

    def unsent(self):
        """
        The events not yet sent on the current link, oldest first.

        :return: a list of C{(frame_id, payload)}.
        """
        entries = self._entries
        return [(frame_id, entries[frame_id][1]) for frame_id in self._unsent]

    def sent(self, frame_id):
        """
        Note that an event went out and awaits its acknowledgement.
        """
        entry = self._entries.get(frame_id)
        if entry is not None:
            entry[2] = True
            self._unsent.pop(frame_id, None)

    def acknowledge(self, frame_id):
        """
        Forget an event the peer has acknowledged.

        :return: True if it was held.
        """
        self._unsent.pop(frame_id, None)
        return self._entries.pop(frame_id, None) is not None

    def release_sent(self):
        """
        Forget every event sent: the peer does not acknowledge (a Go
        tunnel), so sent is as delivered as it gets.

        :return: how many were forgotten.
        """
        sent = [frame_id for frame_id, entry in self._entries.items() if entry[2]]
        for frame_id in sent:
            del self._entries[frame_id]
        return len(sent)

    def requeue(self):
        """
        The link went down: everything unacknowledged is to be sent again.
        """
        for entry in self._entries.values():
            entry[2] = False
        self._unsent = OrderedDict.fromkeys(self._entries)

    def spool(self, path):
        """
        Write the events held to a file, to be loaded by the next run.
        """
        temporary = path + ".tmp"
        with open(temporary, "wb") as f:
            for stamp, payload, _ in self._entries.values():
                f.write(_SPOOLED.pack(stamp, len(payload)) + payload)
        os.replace(temporary, path)

    @staticmethod
    def unspool(path):
        """
        Read and remove a spool file.

        :return: a list of C{(time received, payload)}, oldest first; empty
            when there is no file.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        events = []
        offset = 0
        while offset + _SPOOLED.size <= len(data):
            stamp, length = _SPOOLED.unpack_from(data, offset)
            offset += _SPOOLED.size
            if offset + length > len(data):
                break
            events.append((stamp, data[offset : offset + length]))
            offset += length
        os.remove(path)
        return events
