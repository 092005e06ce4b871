# -*- test-case-name: tests.unit.test_config -*-
"""
The TOML configuration file, compatible with the Go uhppoted-tunnel.

A file holds a C{[defaults]} table and one table per tunnel; L{load} merges
the chosen section over C{[defaults]} key by key and converts every value,
reporting a bad one with its file, section and key.  Unlike Go, which
silently ignores an invalid value, every bad value is an error; unknown keys
are only warnings, since newer Go versions add keys.
"""

import ipaddress
import math
import re
import tomllib
from fractions import Fraction

DEFAULT_CONFIG = "/etc/uhppoted/uhppoted-tunnel.toml"


class ConfigError(Exception):
    """
    An unusable configuration file or value; C{str()} is one line naming the
    file, section and key.
    """


# Go accepts both the micro sign (U+00B5, which it writes) and Greek mu.
_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3,
          "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION = re.compile(r"\+?(?:%s)+" % (_PART,))


def parse_duration(text):
    """
    Parse a duration in Go's C{time.ParseDuration} syntax.

    :param text: e.g. C{"1s"}, C{"1250ms"}, C{"1h30m"}, C{"1.5s"}, C{"0"}.
    :return: the duration in seconds, truncated to whole nanoseconds as Go
        does.
    :raise ValueError: if C{text} is not a duration, or is negative.
    """
    if not isinstance(text, str):
        raise ValueError("invalid duration %r (expected a string such as '5s')"
                         % (text,))
    if text.startswith("-"):
        raise ValueError("invalid duration %r (must not be negative)" % (text,))
    if text in ("0", "+0"):
        return 0.0
    if not _DURATION.fullmatch(text):
        raise ValueError("invalid duration %r (expected e.g. 1s, 1250ms, 5m)"
                         % (text,))
    nanoseconds = int(sum(Fraction(number) * _UNITS[unit]
                          for number, unit in re.findall(_PART, text)))
    if nanoseconds >= 2**63:
        raise ValueError("invalid duration %r (out of range)" % (text,))
    return float(Fraction(nanoseconds, 10**9))


def _fraction(value, digits):
    whole, rest = divmod(value, 10**digits)
    decimals = ("%0*d" % (digits, rest)).rstrip("0")
    return "%d.%s" % (whole, decimals) if decimals else "%d" % (whole,)


def format_duration(seconds):
    """
    Format a duration as Go's C{time.Duration.String} does.

    :param seconds: the duration, e.g. C{1.25} or C{300}.
    :return: e.g. C{"1.25s"}, C{"5m0s"}, C{"1h30m0s"}, C{"300\u00b5s"}.
    """
    nanoseconds = round(seconds * 10**9)
    sign, nanoseconds = "-" if nanoseconds < 0 else "", abs(nanoseconds)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 10**3:
        return "%s%dns" % (sign, nanoseconds)
    if nanoseconds < 10**6:
        return sign + _fraction(nanoseconds, 3) + "\u00b5s"
    if nanoseconds < 10**9:
        return sign + _fraction(nanoseconds, 6) + "ms"
    minutes, rest = divmod(nanoseconds, 60 * 10**9)
    hours, minutes = divmod(minutes, 60)
    text = _fraction(rest, 9) + "s"
    if hours or minutes:
        text = "%dm%s" % (minutes, text)
    return sign + ("%dh" % hours if hours else "") + text


_CONFIG_ARG = re.compile(r"(.*?)(?:(?:#|::)([^#:]*))?", re.DOTALL)


def split_config_arg(arg):
    """
    Split a C{--config} value into a file and a section.

    :param arg: C{"FILE#SECTION"}, C{"FILE::SECTION"}, C{"FILE"},
        C{"#SECTION"} or C{"::SECTION"}.
    :return: C{(path, section)}, either of which may be L{None}.
    """
    path, section = _CONFIG_ARG.fullmatch(arg).groups()
    return (path or None, section or None)


class NestedValueError(ValueError):
    """
    A bad entry, named by its C{key}, inside a table-valued key.
    """

    def __init__(self, key, message):
        ValueError.__init__(self, message)
        self.key = key


def check(kind, accept, convert=lambda value: value):
    """
    :param kind: how a message names what is expected.
    :param accept: C{value -> bool}, whether a TOML value is acceptable.
    :param convert: C{value -> converted}, for acceptable values.
    :return: a converter raising L{ValueError} "expected KIND, got VALUE".
    """

    def converter(value):
        if not accept(value):
            shown = str(value).lower() if type(value) is bool else repr(value)
            raise ValueError("expected %s, got %s" % (kind, shown))
        return convert(value)

    return converter


def integer(low, high=None):
    """
    :param low: the smallest value allowed.
    :param high: the largest value allowed, or L{None}.
    :return: a converter for TOML integers in that range.
    """
    bounds = ">= %d" % low if high is None else "%d..%d" % (low, high)
    return check("an integer " + bounds, lambda value: type(value) is int
                 and low <= value <= (value if high is None else high))


def duration(positive=False):
    """
    :param positive: whether zero is refused.
    :return: a converter for Go duration strings, giving seconds.
    """

    def convert(value):
        seconds = parse_duration(value)
        if positive and seconds == 0:
            raise ValueError("invalid duration %r (must be > 0)" % (value,))
        return seconds

    return convert


_LEVELS = {"debug": "debug", "info": "info", "warn": "warn",
           "warning": "warn", "error": "error"}
_AUTH = {**dict.fromkeys(["required", "true", "yes", "on"], True),
         **dict.fromkeys(["false", "no", "off", "none", ""], False)}
string = check("a string", lambda value: type(value) is str)
boolean = check("true or false", lambda value: type(value) is bool)
log_level = check("debug, info, warn or error",
                  lambda value: type(value) is str and value.lower() in _LEVELS,
                  lambda value: _LEVELS[value.lower()])
# Go's sample file says client-auth = "required", which Go reads as false.
client_auth = check(
    'true, false or "required"',
    lambda value: type(value) is bool or (
        type(value) is str and value.lower() in _AUTH),
    lambda value: value if type(value) is bool else _AUTH[value.lower()])
positive_number = check("a number > 0", lambda value: type(value) in (
    int, float) and 0 < value < math.inf)


def table(kind, entry):
    """
    :param kind: how a message names the table expected.
    :param entry: C{(key, value) -> (key, converted)}, raising L{ValueError}.
    :return: a converter for TOML tables, naming a bad entry's key.
    """

    def convert(value):
        result = {}
        for key, item in value.items():
            try:
                result.update([entry(key, item)])
            except ValueError as e:
                raise NestedValueError(key, str(e)) from None
        return result

    return check(kind, lambda value: type(value) is dict, convert)


def _interface(key, name):
    if key not in ("in", "out"):
        raise ValueError("unknown key (expected in or out)")
    return key, string(name)


_ADDRESS = re.compile(r"(?:(udp|tcp)::)?([0-9.]+):([0-9]{1,5})")


def controller_address(text):
    """
    :param text: C{"udp::IP:PORT"}, C{"tcp::IP:PORT"} or C{"IP:PORT"} (UDP).
    :return: C{(protocol, host, port)}.
    """
    match = _ADDRESS.fullmatch(text) if isinstance(text, str) else None
    try:
        host, port = str(ipaddress.IPv4Address(match[2])), int(match[3])
        if not 1 <= port <= 65535:
            raise ValueError(port)
    except (TypeError, ValueError):
        raise ValueError(
            "invalid address %r (expected udp::IP:PORT, tcp::IP:PORT or IP:PORT)"
            % (text,)) from None
    return (match[1] or "udp", host, port)


def _controller(key, address):
    serial = int(key) if key.isascii() and key.isdigit() else 0
    if not 1 <= serial <= 0xFFFFFFFF:
        raise ValueError("invalid controller serial number (expected 1..4294967295)")
    return serial, controller_address(address)


KEYS = {
    **dict.fromkeys(["in", "out", "lockfile", "ca-cert", "cert", "key", "html",
                     "label", "user"], string),
    **dict.fromkeys(["remove-lockfile", "console", "debug"], boolean),
    "interfaces": table('a table such as { in = "eth0" }', _interface),
    "max-retries": integer(-1),
    "max-retry-delay": duration(),
    "udp-timeout": duration(positive=True),
    "handshake-timeout": duration(positive=True),
    "client-auth": client_auth,
    "log-level": log_level,
    "rate-limit": positive_number,
    "rate-limit-burst": integer(1),
    "max-payload": integer(1, 65535),
    "controllers": table("a table of serial number = address", _controller),
    "event-buffer": integer(1),
    "event-buffer-age": duration(positive=True),
    "event-window": integer(1),
    "event-spool": string,
    "event-rate-limit": positive_number,
    "udp-receive-buffer": integer(4096, 1 << 30),
}
"""TOML key -> converter raising L{ValueError}; add a key with one line."""

MERGED = {"interfaces", "controllers"}
"""Table-valued keys whose entries a section merges over C{[defaults]}."""


class Settings(dict):
    """
    Converted values keyed by TOML key name.

    :ivar path: the file read.
    :ivar section: the section chosen, or L{None}.
    :ivar warnings: one-line messages about ignored keys.
    """

    def __init__(self, path, section):
        dict.__init__(self)
        self.path, self.section = path, section
        self.warnings = []
        self._sources = {}

    def source(self, key):
        """
        :param key: a TOML key name.
        :return: C{"file [section] key"}, naming the section the value came
            from, for messages.
        """
        return self._sources.get(key) or "%s [%s] %s" % (
            self.path, self.section or "defaults", key)

    def _add(self, values, name):
        for key, raw in values.items():
            where = "%s [%s] %s" % (self.path, name, key)
            if key not in KEYS:
                self.warnings.append(where + ": unknown key (ignored)")
                continue
            try:
                value = KEYS[key](raw)
            except NestedValueError as e:
                raise ConfigError("%s [%s.%s] %s: %s"
                                  % (self.path, name, key, e.key, e)) from None
            except ValueError as e:
                raise ConfigError("%s: %s" % (where, e)) from None
            if key in MERGED and key in self:
                value = {**self[key], **value}
            self[key], self._sources[key] = value, where


def load(path, section, *, explicit):
    """
    Read a configuration file and merge C{[section]} over C{[defaults]}.

    :param path: the file, or L{None} for L{DEFAULT_CONFIG}.
    :param section: the tunnel's section, or L{None} for C{[defaults]} alone.
    :param explicit: whether the user named the file, so that a missing file
        is an error rather than an empty configuration.  A missing file is
        always an error when a section is named.
    :return: the merged L{Settings}.
    :raise ConfigError: if the file or any value in the chosen sections is
        unusable.
    """
    path = DEFAULT_CONFIG if path is None else path
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        if explicit or section is not None:
            raise ConfigError("%s: no such file" % (path,)) from None
        return Settings(path, None)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: invalid TOML: %s" % (path, e)) from None
    except UnicodeDecodeError:
        raise ConfigError("%s: invalid TOML: not UTF-8 text" % (path,)) from None
    except OSError as e:
        raise ConfigError("%s: %s" % (path, e.strerror or e)) from None
    settings = Settings(path, section)
    settings.warnings.extend("%s: %s outside any section (ignored)" % (path, key)
                             for key, value in document.items()
                             if not isinstance(value, dict))
    for name in ["defaults"] + [section] * (section not in (None, "defaults")):
        values = document.get(name, {} if name == "defaults" else None)
        if values is None:
            raise ConfigError("%s: no section [%s]" % (path, name))
        if not isinstance(values, dict):
            raise ConfigError("%s: %s is not a section" % (path, name))
        settings._add(values, name)
    return settings
