# -*- test-case-name: tests.loopback.test_http,tests.unit.test_http -*-
"""
The JSON of the HTTP ends, as the Go tunnel speaks it: reading a
C{/udp/send} or C{/udp/broadcast} body, and writing an answer or an error.
"""

import base64
import binascii
import gzip
import json

from twisted.web import server

from uhppoted_tunnel.core.durations import parse_duration

#: Go: answers longer than this are gzipped for clients that accept it.
GZIP_MINIMUM = 16384


#: Go: a broadcast collects replies for 5s unless told otherwise.
DEFAULT_WAIT = 5.0

#: The longest a broadcast may ask to wait.
MAX_WAIT = 30.0


_INT64 = 1 << 63


class BadRequest(Exception):
    """
    A request that is answered with an error.

    :ivar status: the HTTP status.
    :ivar message: the one-line reason sent as C{"error"}.
    :ivar ident: the request's C{ID}, or C{None} when not yet known.
    """

    def __init__(self, status, message, ident=None):
        Exception.__init__(self, status, message, ident)
        self.status = status
        self.message = message
        self.ident = ident


class UDPRequest:
    """
    A parsed C{/udp/send} or C{/udp/broadcast} body.

    :ivar ident: the C{ID} to echo.
    :ivar payload: the packet (bytes).
    :ivar wait: for a send, whether to wait for a reply; for a broadcast,
        the seconds to collect replies for.
    """

    __slots__ = ("ident", "payload", "wait")

    def __init__(self, ident, payload, wait):
        self.ident = ident
        self.payload = payload
        self.wait = wait


def check_content_type(value):
    """
    Accept C{application/json}, with at most a UTF-8 charset.

    :param value: the Content-Type header (text) or C{None}.
    :raise BadRequest: otherwise.
    """
    media, _, parameters = (value or "").partition(";")
    if media.strip().lower() != "application/json":
        raise BadRequest(400, "invalid Content-Type '{}' (expected application/json)".format(value or ""))
    for parameter in parameters.split(";"):
        name, _, setting = parameter.partition("=")
        if name.strip().lower() == "charset" and setting.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BadRequest(400, "invalid charset '{}' (expected utf-8)".format(setting.strip()))


def parse_packet(value, max_payload):
    """
    The packet of a C{request} field: an array of numbers 0..255 or a
    base64 string, as Go's C{[]byte} takes.

    :raise ValueError: naming what is wrong.
    """
    if isinstance(value, str):
        try:
            packet = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("'request' is not valid base64") from None
    elif isinstance(value, list):
        if not all(type(b) is int and 0 <= b <= 255 for b in value):
            raise ValueError("'request' must hold only whole numbers 0..255")
        packet = bytes(value)
    else:
        raise ValueError("'request' must be an array of numbers 0..255 or a base64 string")
    if not packet:
        raise ValueError("'request' is empty")
    if len(packet) > max_payload:
        raise ValueError("'request' is {} bytes (limit {})".format(len(packet), max_payload))
    return packet


def parse_wait(value, broadcast):
    """
    A C{wait} field: for a send, true or false; for a broadcast, a Go
    duration, at most L{MAX_WAIT}.

    :raise ValueError: naming what is wrong.
    """
    if not broadcast:
        if not isinstance(value, bool):
            raise ValueError("'wait' must be true or false")
        return value
    if not isinstance(value, str):
        raise ValueError("'wait' must be a duration such as \"5s\"")
    try:
        return min(parse_duration(value), MAX_WAIT)
    except ValueError as e:
        raise ValueError("'wait': {}".format(e)) from None


def parse_body(body, broadcast, max_payload):
    """
    Parse and check a request body.

    :param body: the body (bytes).
    :param broadcast: True for C{/udp/broadcast}, False for C{/udp/send}.
    :param max_payload: the longest packet relayed.
    :return: a L{UDPRequest}.
    :raise BadRequest: naming what is wrong (status 400).
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(400, "invalid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest(400, "expected a JSON object")
    ident = document.get("ID", 0)
    if type(ident) is not int or not -_INT64 <= ident < _INT64:
        raise BadRequest(400, "'ID' must be a whole number")
    try:
        payload = parse_packet(document.get("request"), max_payload)
        wait = parse_wait(document["wait"], broadcast) if "wait" in document else (
            DEFAULT_WAIT if broadcast else True)
    except ValueError as e:
        raise BadRequest(400, str(e), ident) from None
    return UDPRequest(ident, payload, wait)


def accepts_gzip(value):
    """
    True if an Accept-Encoding header (text or C{None}) allows gzip.
    """
    for coding in (value or "").lower().split(","):
        name, _, parameters = coding.partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            quality = parameters.strip()
            if quality.startswith("q="):
                try:
                    return float(quality[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def encode_json(document, accept_encoding=None):
    """
    Encode an answer as Go's C{json.Marshal} does, gzipped when it is over
    L{GZIP_MINIMUM} bytes and the client accepts gzip.

    :param document: the answer.
    :param accept_encoding: the request's Accept-Encoding header or C{None}.
    :return: C{(body, gzipped)}.
    """
    body = json.dumps(document, separators=(",", ":")).encode("utf-8")
    if len(body) > GZIP_MINIMUM and accepts_gzip(accept_encoding):
        return gzip.compress(body, mtime=0), True
    return body, False


#: Reason phrases twisted.web does not know (it would say "Unknown Status").
REASONS = {429: b"Too Many Requests"}


def respond(request, status, document, close=False):
    """
    Answer a request with JSON and finish it; API answers are never cached
    (C{Cache-Control: no-store}).
    """
    accept = request.getHeader(b"accept-encoding")
    body, gzipped = encode_json(document, None if accept is None else accept.decode("latin-1"))
    request.setResponseCode(status, REASONS.get(status))
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if gzipped:
        request.setHeader(b"Content-Encoding", b"gzip")
    if close:
        request.setHeader(b"Connection", b"close")
        request.channel.persistent = False
    request.write(body)
    request.finish()
    return server.NOT_DONE_YET


def error(request, status, message, ident=None, close=False):
    """
    Answer a request with C{{"ID": ident, "error": message}}.
    """
    document = {"error": message} if ident is None else {"ID": ident, "error": message}
    return respond(request, status, document, close)
