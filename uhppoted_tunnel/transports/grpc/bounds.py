# -*- test-case-name: tests.unit.test_grpchostile -*-
"""
What a gRPC end's HTTP/2 peer may send, and what happens past it: the
settings this end announces (streams at once, the header list, the
windows), budgets over time (the project's token buckets) for new streams (a rapid-reset flood,
CVE-2023-44487) and for pings and settings (a ping flood), the length of
every frame checked from its header before any of it is held
(L{FrameGuard}: C{h2} would buffer a frame of up to 16 MiB before it
looks at its length), and the keepalive pings' timing.
"""

import re

#: HTTP/2 streams one connection may carry at once: a tunnel's client
#: opens one per connection.
STREAMS_PER_CONNECTION = 4

#: The longest header list a peer may send (HPACK-decoded).
MAX_HEADER_LIST = 8192

#: The window this end gives a peer, per stream and for the connection:
#: what a peer may send that this end has not yet consumed. Frames are
#: relayed as they arrive, so this bounds the bytes held per connection.
WINDOW = 65535

#: Go: TCP keepalive every 15 s; the gRPC ends ping as often (or more, for
#: a short --dead-peer-timeout, but never more than once a second).
KEEPALIVE = 15.0
MIN_PING_INTERVAL = 1.0

#: Pings (and SETTINGS) a peer may send: this many at once, then one a
#: second on average; past it, a ping flood.
PING_BURST = 10
PING_RATE = 1.0

#: Streams a peer may open: this many at once, then two a second on
#: average; past it, a rapid-reset flood.
STREAM_BURST = 16
STREAM_RATE = 2.0

#: Seconds a closing call has to send what is queued and for its peer to
#: end it, before the connection is dropped.
CLOSE_TIMEOUT = 5.0


class Flood(Exception):
    """
    The peer sent more of something than any gRPC peer needs.
    """

    def __init__(self, what):
        Exception.__init__(self, what)
        self.what = what

    def __str__(self):
        return "the peer sent {} (a flood): closed with ENHANCE_YOUR_CALM".format(self.what)


#: How C{h2} refuses a frame its state machine does not allow, in the
#: names of its own enumerations (C{Invalid input ConnectionInputs.RECV_PING
#: in state ConnectionState.CLOSED}).
STATE_MACHINE = re.compile(
    r"Invalid input (Connection|Stream)Inputs\.(SEND|RECV)_(\w+) in state (?:Connection|Stream)State\.(\w+)$")


class H2Failed(Exception):
    """
    The peer broke the HTTP/2 protocol; the message is C{h2}'s, but for
    its state machine's refusals, which are put in words
    (L{STATE_MACHINE}).
    """

    def __str__(self):
        message = self.args[0]
        match = STATE_MACHINE.match(message)
        if match is not None:
            scope, direction, frame, state = match.groups()
            message = "a {} frame {} while the {} is {}".format(
                frame.replace("_", " "), "received" if direction == "RECV" else "to send", scope.lower(),
                state.replace("_", " ").lower())
        return "HTTP/2 protocol error: {}".format(message)


class PingTimeout(Exception):
    """
    A keepalive ping went unanswered.
    """

    def __str__(self):
        return "no answer to a keepalive ping within {:g}s (--dead-peer-timeout)".format(self.args[0])


def keepalive(dead_peer_timeout):
    """
    :return: C{(interval, timeout)} in seconds of the keepalive pings that
        notice a dead peer within C{--dead-peer-timeout}.
    """
    interval = max(MIN_PING_INTERVAL, min(KEEPALIVE, dead_peer_timeout / 2))
    return interval, max(dead_peer_timeout - interval, MIN_PING_INTERVAL)



#: The longest HTTP/2 frame a peer may send (SETTINGS_MAX_FRAME_SIZE,
#: which this end leaves at its default).
MAX_FRAME = 16384

#: What a server reads first: the client's connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class FrameGuard:
    """
    Follows the frames of what a peer sends, and refuses one announced
    longer than L{MAX_FRAME} from its 9-byte header, before C{h2} holds
    any of it.
    """

    __slots__ = ("_skip", "_head")

    def __init__(self, server):
        """
        :param server: whether the peer is a client (whose preface comes
            first, and which C{h2} checks).
        """
        self._skip = len(PREFACE) if server else 0
        self._head = b""

    def check(self, data):
        """
        :raise H2Failed: a frame in C{data} is too long.
        """
        at = 0
        size = len(data)
        while at < size:
            if self._skip:
                step = min(self._skip, size - at)
                self._skip -= step
                at += step
                continue
            need = 9 - len(self._head)
            self._head += data[at:at + need]
            at += need
            if len(self._head) < 9:
                return
            length = int.from_bytes(self._head[:3], "big")
            self._head = b""
            if length > MAX_FRAME:
                raise H2Failed("a frame of {} bytes, more than the {} allowed".format(length, MAX_FRAME))
            self._skip = length
