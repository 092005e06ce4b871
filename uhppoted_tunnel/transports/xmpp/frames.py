# -*- test-case-name: tests.unit.test_xmpp -*-
"""
Frames in XMPP stanzas, and the pace they are sent at: the logic of the
C{xmpp/} transport, with no stream or socket (those are
L{uhppoted_tunnel.transports.xmpp.session}'s).

Frames travel base64-encoded in message stanzas of this project's own
namespace, to the peer's full JID, several to a stanza when several wait::

    <message to='host@example.org/x1' type='headline'>
      <frames xmlns='urn:uhppoted:tunnel:0'>
        <frame id='17'>FwEAAPh...AA==</frame><frame id='18'/>
      </frames>
      <no-store xmlns='urn:xmpp:hints'/><no-copy xmlns='urn:xmpp:hints'/>
    </message>

(C{<frame id='18'/>} carries an empty payload: an event's
acknowledgement.) A server never keeps these for later: a headline
message to a full JID is dropped when that resource is offline (RFC 6121
8.5.3.2.1), never goes to offline storage or to other resources, and the
hints keep archives (MAM) and carbons away from it too.

A server limits the bytes each client sends (prosody: 10 kB/s with
C{mod_limits}), reading no more from a client over it. L{SendQueue} paces
what is sent with a token bucket counting bytes, so that frames wait in a
queue this end bounds and reports rather than in socket buffers.
"""

from binascii import Error as BinasciiError
from binascii import a2b_base64, b2a_base64
from collections import deque
from xml.sax.saxutils import quoteattr

from twisted.words.protocols.jabber.jid import InvalidFormat, JID

from uhppoted_tunnel.core.counts import TOO_LONG
from uhppoted_tunnel.core.throttle import TokenBucket

#: This project's namespace for frames.
NS_TUNNEL = "urn:uhppoted:tunnel:0"

#: Message processing hints (XEP-0334).
NS_HINTS = "urn:xmpp:hints"

#: The most bytes of frames put in one stanza.
BATCH_BYTES = 4096

#: The pace's burst in bytes (below prosody's 8 KiB read, after which it
#: pauses a client over its rate).
PACE_BURST = 4096

_TAIL = "</frames><no-store xmlns='{0}'/><no-copy xmlns='{0}'/></message>".format(NS_HINTS)

#: What a bad frame is dropped for (the keys of a connector's warnings;
#: L{TOO_LONG} is the metrics' reason too).
BAD_ID = "bad id"
BAD_BASE64 = "bad base64"

#: The metrics' reasons for the rest of what an C{xmpp/} end drops:
#: frames not well formed, stanzas from others than the peer.
BAD_FRAME = "bad_frame"
STRANGER = "stranger"


def message_head(to):
    """
    The start of a message carrying frames to a full JID.

    :param to: the JID, as text.
    """
    return "<message to={} type='headline'><frames xmlns='{}'>".format(quoteattr(to), NS_TUNNEL)


def frame_element(frame_id, payload):
    """
    One frame, as XML text.

    :param frame_id: the u32 id.
    :param payload: the packet (empty for an acknowledgement).
    """
    if not payload:
        return "<frame id='%d'/>" % frame_id
    return "<frame id='%d'>%s</frame>" % (frame_id, b2a_base64(payload, newline=False).decode("ascii"))


def stanza(head, frames):
    """
    A whole message stanza.

    :param head: L{message_head}'s text.
    :param frames: L{frame_element} texts.
    """
    return head + "".join(frames) + _TAIL


def base64_limit(max_payload):
    """
    The longest base64 text of a payload of C{max_payload} bytes.
    """
    return 4 * -(-max_payload // 3)


def _text(element):
    # the parser may hand text over in pieces: join them all
    return "".join(child for child in element.children if isinstance(child, str))


def read_frames(message, max_payload, bad):
    """
    The frames in a message stanza.

    :param message: the C{<message/>} element (L{twisted.words.xish.domish}).
    :param max_payload: the longest payload accepted.
    :param bad: called with L{BAD_ID}, L{BAD_BASE64} or L{TOO_LONG} for
        each frame dropped.
    :return: a list of C{(frame_id, payload)}.
    """
    found = []
    limit = base64_limit(max_payload)
    for frames in message.elements(NS_TUNNEL, "frames"):
        for frame in frames.elements(NS_TUNNEL, "frame"):
            frame_id = frame.getAttribute("id")
            if not (frame_id and len(frame_id) <= 10 and frame_id.isascii() and frame_id.isdigit()
                    and int(frame_id) <= 0xFFFFFFFF):
                bad(BAD_ID)
                continue
            text = _text(frame)
            if len(text) > limit:
                bad(TOO_LONG)
                continue
            try:
                payload = a2b_base64(text, strict_mode=True) if text else b""
            except (BinasciiError, ValueError):
                bad(BAD_BASE64)
                continue
            if len(payload) > max_payload:
                bad(TOO_LONG)
                continue
            found.append((int(frame_id), payload))
    return found


def parse_jid(text):
    """
    :return: the L{JID} in C{text}, or C{None} if it is not one.
    """
    try:
        return JID(text)
    except (InvalidFormat, UnicodeError, ValueError, TypeError):
        return None


class Peer:
    """
    Who the other half is: C{--xmpp-peer}, a bare JID (any of its
    resources) or a full JID (that resource only).
    """

    def __init__(self, jid):
        """
        :param jid: the peer's L{JID}.
        """
        self.jid = jid
        self.bare = jid.userhost()

    def matches(self, sender):
        """
        :param sender: a stanza's C{from}, as text (or C{None}).
        :return: the sender's full JID, normalised, if it is the peer, else
            C{None}.
        """
        found = parse_jid(sender) if sender else None
        if found is None or found.userhost() != self.bare or not found.resource:
            return None
        if self.jid.resource and found.resource != self.jid.resource:
            return None
        return found.full()

    def __str__(self):
        return self.jid.full()


class SendQueue:
    """
    Frames waiting to be sent to the server, sent at C{rate} bytes a
    second (a burst of L{PACE_BURST}), the frames for one peer that wait
    together in one stanza.

    Bounded twice: a frame that would take what waits past C{limit} bytes
    is refused (L{push} returns False), and in a request tunnel a frame
    that has waited longer than C{max_age} is dropped when its turn comes
    (a reply could no longer reach anyone), so that a burst over the rate
    delays what follows by at most that.
    """

    def __init__(self, clock, write, rate, limit, max_age=None, stale=None):
        """
        :param clock: an C{IReactorTime}.
        :param write: called with each stanza's text.
        :param rate: bytes a second.
        :param limit: the most bytes of frames waiting.
        :param max_age: seconds a frame may wait, or C{None} for ever.
        :param stale: called with the number of frames dropped for waiting
            too long.
        """
        self.clock = clock
        self.write = write
        self.bucket = TokenBucket(rate, PACE_BURST, clock.seconds)
        self.limit = limit
        self.max_age = max_age
        self.stale = stale
        #: C{(link, frame text, when queued)}, oldest first
        self.waiting = deque()
        self.queued = 0
        self._timer = None

    def push(self, link, frame):
        """
        Queue a frame and send what the pace allows.

        :param link: the peer's link, whose C{head} is its L{message_head}.
        :param frame: L{frame_element}'s text.
        :return: False if the frame was refused (the queue is full).
        """
        if self.waiting and self.queued + len(frame) > self.limit:
            return False
        self.waiting.append((link, frame, self.clock.seconds()))
        self.queued += len(frame)
        if self._timer is None:
            self._send()
        return True

    def _send(self):
        self._timer = None
        waiting = self.waiting
        if self.max_age is not None:
            self._expire()
        while waiting:
            link = waiting[0][0]
            size = len(link.head) + len(_TAIL)
            count = 0
            for other, frame, _ in waiting:
                if other is not link or (count and size + len(frame) > BATCH_BYTES):
                    break
                size += len(frame)
                count += 1
            # a stanza over the burst (a huge --max-payload) pays the burst
            cost = min(size, PACE_BURST)
            if not self.bucket.take(cost=cost):
                self._timer = self.clock.callLater(self.bucket.wait(cost), self._send)
                return
            frames = [waiting.popleft()[1] for _ in range(count)]
            self.queued -= size - len(link.head) - len(_TAIL)
            self.write(stanza(link.head, frames))

    def _expire(self):
        cutoff = self.clock.seconds() - self.max_age
        waiting = self.waiting
        dropped = 0
        while waiting and waiting[0][2] < cutoff:
            self.queued -= len(waiting.popleft()[1])
            dropped += 1
        if dropped and self.stale is not None:
            self.stale(dropped)

    def discard(self, link):
        """
        Forget the frames for a peer that has gone.
        """
        kept = deque(item for item in self.waiting if item[0] is not link)
        self.queued = sum(len(item[1]) for item in kept)
        self.waiting = kept

    def stop(self):
        """
        Forget everything, and cancel the timer.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiting.clear()
        self.queued = 0
