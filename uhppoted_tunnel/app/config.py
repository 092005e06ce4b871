# -*- test-case-name: tests.unit.test_config -*-
"""
The TOML configuration file, compatible with the Go uhppoted-tunnel.

A file holds a C{[defaults]} table and one table per tunnel; L{load} merges
the chosen section over C{[defaults]} key by key and converts every value,
reporting a bad one with its file, section and key.  Unlike Go, which
silently ignores an invalid value, every bad value is an error; an unknown
key is a warning naming the closest known key when the tunnel runs, and an
error in C{check}. Each connector plugin
declares its own keys (L{KEYS}); the converters are in
L{uhppoted_tunnel.core.values}.
"""

import ipaddress
import re
import tomllib

from uhppoted_tunnel.app.spec import connector_plugins
from uhppoted_tunnel.core.bounded import FileTooLarge, read_bounded
from uhppoted_tunnel.core.hints import did_you_mean
from uhppoted_tunnel.core.values import (
    NestedValueError,
    boolean,
    check,
    duration,
    integer,
    positive_number,
    shown,
    string,
    table,
)

DEFAULT_CONFIG = "/etc/uhppoted/uhppoted-tunnel.toml"

#: The largest configuration file read: a real one is a few KiB, and a
#: bound keeps C{--config /dev/zero} (or a runaway file) from exhausting
#: memory.
MAX_CONFIG_SIZE = 1 << 20


class ConfigError(Exception):
    """
    An unusable configuration file or value; C{str()} is one line naming the
    file, section and key.
    """


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


_LEVELS = {"debug": "debug", "info": "info", "warn": "warn",
           "warning": "warn", "error": "error"}
event_peer = check("tunnel or go", lambda value: type(value) is str and value.lower() in ("tunnel", "go"),
                   lambda value: value.lower())

log_level = check("debug, info, warn or error",
                  lambda value: type(value) is str and value.lower() in _LEVELS,
                  lambda value: _LEVELS[value.lower()])
log_format = check("text or json", lambda value: type(value) is str and value.lower() in ("text", "json"),
                   lambda value: value.lower())


unknown_serial = check("all or drop", lambda value: type(value) is str and value.lower() in ("all", "drop"),
                       lambda value: value.lower())


def _route(identity, serials):
    if not identity.strip():
        raise ValueError("empty site identity (expected a certificate subject or an address)")
    if type(serials) is not list or not serials or not all(
            type(serial) is int and 1 <= serial <= 0xFFFFFFFF for serial in serials):
        raise ValueError("expected a list of controller serial numbers (1..4294967295), got {}".format(
            shown(serials)))
    return identity, serials


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


GENERAL_KEYS = {
    **dict.fromkeys(["in", "out", "lockfile", "html", "label", "user"], string),
    **dict.fromkeys(["remove-lockfile", "console", "debug", "freebind"], boolean),
    "no-http-console": boolean,
    "interfaces": table('a table such as { in = "eth0" }', _interface),
    "max-retries": integer(-1),
    "max-retry-delay": duration(),
    "udp-timeout": duration(positive=True),
    "http-request-timeout": duration(positive=True),
    "max-connections": integer(1),
    "max-connections-per-source": integer(1),
    "connection-probation": duration(positive=True),
    "max-status-streams": integer(1),
    "log-level": log_level,
    "rate-limit": positive_number,
    "rate-limit-burst": integer(1),
    "max-payload": integer(1, 65535),
    "controllers": table("a table of serial number = address", _controller),
    "routes": table("a table of site identity = [serial, ...]", _route),
    "unknown-serial": unknown_serial,
    "event-buffer": integer(1),
    "event-buffer-age": duration(positive=True),
    "event-window": integer(1),
    "event-spool": string,
    "event-rate-limit": positive_number,
    "event-peer": event_peer,
    "rate-limit-per-source": positive_number,
    "rate-limit-per-source-burst": integer(1),
    "max-send-queue": integer(1024),
    "max-pending-replies": integer(1),
    "stall-timeout": duration(positive=True),
    "dead-peer-timeout": duration(positive=True),
    "udp-receive-buffer": integer(4096, 1 << 30),
    "metrics": string,
    "log-format": log_format,
}
"""The keys no connector plugin declares: TOML key -> converter raising
L{ValueError}; add a key with one line."""

KEYS = {**GENERAL_KEYS, **{option.name: option.convert for plugin in connector_plugins() for option in plugin.options}}
"""Every TOML key -> converter: L{GENERAL_KEYS} and the keys each connector
plugin declares (L{uhppoted_tunnel.core.declare.Option})."""

MERGED = {"interfaces", "controllers", "routes"}
"""Table-valued keys whose entries a section merges over C{[defaults]}."""


class Settings(dict):
    """
    Converted values keyed by TOML key name.

    :ivar path: the file read.
    :ivar section: the section chosen, or L{None}.
    :ivar warnings: one-line messages about ignored keys.
    :ivar unknown: one-line messages naming each unknown key and the
        closest known one (C{check} refuses them; a run warns).
    :ivar sections: the file's sections other than C{[defaults]}, for the
        hint when none was chosen.
    """

    def __init__(self, path, section):
        dict.__init__(self)
        self.path, self.section = path, section
        self.warnings = []
        self.unknown = []
        self.sections = []
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
                hint = did_you_mean(key, KEYS)
                self.unknown.append("{}: unknown key{}".format(where, hint))
                self.warnings.append("{}: unknown key (ignored){}".format(where, hint))
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
        data, _ = read_bounded(path, path, MAX_CONFIG_SIZE, "a configuration file")
        document = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        if explicit or section is not None:
            raise ConfigError("%s: no such file" % (path,)) from None
        return Settings(path, None)
    except FileTooLarge as e:
        raise ConfigError(str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: invalid TOML: %s" % (path, e)) from None
    except UnicodeDecodeError:
        raise ConfigError("%s: invalid TOML: not UTF-8 text" % (path,)) from None
    except RecursionError:
        raise ConfigError("%s: invalid TOML: nested too deeply" % (path,)) from None
    except OSError as e:
        raise ConfigError("%s: %s" % (path, e.strerror or e)) from None
    settings = Settings(path, section)
    settings.sections = [name for name, value in document.items() if isinstance(value, dict) and name != "defaults"]
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
