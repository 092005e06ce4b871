# -*- test-case-name: tests.unit.test_options -*-
"""
The tunnel's options: the Go command line, merged with the TOML file.

One L{Options} serves the C{uhppoted-tunnel} command, the C{twistd
uhtunnel} plugin and C{.tac} files. Precedence: command line, then the
TOML section, then the TOML C{[defaults]}, then the built-in defaults.
Every value is checked, and both connector strings are parsed, before
anything listens; a bad one is a L{usage.UsageError} naming the flag or
the file, section and key.
"""

import os
import sys
import textwrap

from twisted.python import usage

from uhppoted_tunnel.link import bind
from uhppoted_tunnel.app import config
from uhppoted_tunnel.core import eventfiles, events
from uhppoted_tunnel.link import limits
from uhppoted_tunnel.app import lockfile
from uhppoted_tunnel.app import spec
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.ends.udpsocket import DEFAULT_RECEIVE_BUFFER
from uhppoted_tunnel.core.declare import FLAG, LIST, PARAMETER
from uhppoted_tunnel.core.values import read_integer as _whole
from uhppoted_tunnel.core.values import read_number as _number
from uhppoted_tunnel.interfaces import IN, OUT
from uhppoted_tunnel.core.router import DEFAULT_BURST, DEFAULT_RATE
from uhppoted_tunnel.link import framed as wire
from uhppoted_tunnel.observe.defaults import DEFAULT_MAX_STREAMS, DEFAULT_REQUEST_TIMEOUT
from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD
from uhppoted_tunnel.core.replies import MAX_PENDING_REPLIES

#: The installed connector plugins, whose options join the general ones.
PLUGINS = spec.connector_plugins()

#: Built-in defaults, keyed like the TOML file (Go's defaults).
DEFAULTS = {
    "in": None,
    "out": None,
    "udp-timeout": 5.0,
    "max-retries": -1,
    "max-retry-delay": 300.0,
    "lockfile": None,
    "log-level": "info",
    "html": "./html",
    "rate-limit": DEFAULT_RATE,
    "rate-limit-burst": DEFAULT_BURST,
    "max-payload": DEFAULT_MAX_PAYLOAD,
    "console": False,
    "no-http-console": False,
    "debug": False,
    "freebind": False,
    "remove-lockfile": False,
    "http-request-timeout": DEFAULT_REQUEST_TIMEOUT,
    "max-connections": limits.DEFAULT_MAX_CONNECTIONS,
    "max-connections-per-source": limits.DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
    "connection-probation": limits.PROBATION,
    "max-status-streams": DEFAULT_MAX_STREAMS,
    "event-buffer": events.DEFAULT_BUFFER,
    "event-buffer-age": events.DEFAULT_BUFFER_AGE,
    "event-window": events.DEFAULT_WINDOW,
    "event-spool": None,
    "event-rate-limit": None,
    "event-peer": "tunnel",
    "rate-limit-per-source": None,
    "rate-limit-per-source-burst": None,
    "max-send-queue": wire.DEFAULT_MAX_SEND_QUEUE,
    "max-pending-replies": MAX_PENDING_REPLIES,
    "stall-timeout": wire.DEFAULT_STALL_TIMEOUT,
    "dead-peer-timeout": wire.DEFAULT_DEAD_PEER_TIMEOUT,
    "udp-receive-buffer": DEFAULT_RECEIVE_BUFFER,
    "metrics": None,
    "log-format": "text",
    "unknown-serial": "all",
    **{option.name: option.default for plugin in PLUGINS for option in plugin.options},
}

#: Keys that are on/off flags on the command line.
FLAGS = frozenset(["console", "debug", "freebind", "no-http-console"]
                  + [option.name for plugin in PLUGINS for option in plugin.options if option.kind == FLAG])


def _checked(key, read=str):
    """
    The coercion of C{--KEY}: the command-line text read as the TOML file
    would type it (C{read}), then checked by the file's own converter for
    the key (L{config.KEYS}), so a flag and a file accept the same values.
    A C{ValueError} becomes a usage error naming the flag.
    """
    convert = config.KEYS[key]

    def coerce(text):
        try:
            return convert(read(text))
        except ValueError as e:
            raise usage.UsageError("--{}: {}".format(key, e)) from None

    coerce.coerceDoc = ""
    return coerce


class Options(usage.Options):
    """
    uhppoted-tunnel [run] --in CONNECTOR --out CONNECTOR [options]
    """

    synopsis = "[run] --in CONNECTOR --out CONNECTOR [options]"

    longdesc = (
        "Relays UHPPOTE access controller UDP requests and replies between an *in* "
        "connector and an *out* connector (udp/listen, udp/broadcast, tcp/server, "
        "tcp/client, ...). Values from --config FILE#SECTION apply unless given here."
    )

    optFlags = [
        ["console", None, "Run as a console application (always so: accepted for Go compatibility)."],
        ["debug", None, "Log every packet with a hex dump."],
        ["no-http-console", None, "http/ and https/ ends do not serve the controller console at /console/."],
        ["freebind", None, "Server and udp/listen ends may bind an address that is not up yet (IP_FREEBIND), "
                           "so a tunnel can start before the network is online."],
    ] + [[option.name, None, option.help] for plugin in PLUGINS for option in plugin.options if option.kind == FLAG]

    optParameters = [
        ["in", None, None, "The in connector, e.g. udp/listen:0.0.0.0:60000 or tcp/client:HOST:12345."],
        ["out", None, None, "The out connector, e.g. tcp/server:0.0.0.0:12345 or udp/broadcast:192.168.1.255:60000."],
        ["config", None, None, "TOML file and section: FILE#SECTION, FILE::SECTION, FILE or #SECTION "
                               "(default " + config.DEFAULT_CONFIG + " if it exists)."],
        ["udp-timeout", None, None, "How long to wait for UDP replies (default 5s).",
         _checked("udp-timeout")],
        ["max-retries", None, None, "Failed connection attempts in a row before giving up; -1 retries forever "
                                    "(default -1).", _checked("max-retries", _whole)],
        ["max-retry-delay", None, None, "The longest delay between connection attempts (default 5m).",
         _checked("max-retry-delay")],
        ["lockfile", None, None, "The PID lockfile (default uhppoted-tunnel-<sha1(in+out)>.pid in $RUNTIME_DIRECTORY, "
                                 "/run/uhppoted for root, $XDG_RUNTIME_DIR or <tmp>/uhppoted-tunnel-<uid>)."],
        ["log-level", None, None, "debug, info, warn or error (default info).", _checked("log-level")],
        ["html", None, None, "Folder of static files for the HTTP connector (default ./html)."],
        ["rate-limit", None, None, "Requests per second allowed on average (default 1).",
         _checked("rate-limit", _number)],
        ["rate-limit-burst", None, None, "Requests allowed at once above the rate (default 120).",
         _checked("rate-limit-burst", _whole)],
        ["max-payload", None, None, "The longest packet relayed, in bytes (default 1024).",
         _checked("max-payload", _whole)],
        ["http-request-timeout", None, None, "How long an HTTP request's head and body may take to arrive, "
                                             "all told (default 10s).", _checked("http-request-timeout")],
        ["max-connections", None, None, "Open connections allowed per server end; more are closed at once "
                                        "(default {}).".format(limits.DEFAULT_MAX_CONNECTIONS),
         _checked("max-connections", _whole)],
        ["max-connections-per-source", None, None, "Open connections allowed per server end from one source "
                                                   "address (default {}).".format(
                                                       limits.DEFAULT_MAX_CONNECTIONS_PER_SOURCE),
         _checked("max-connections-per-source", _whole)],
        ["connection-probation", None, None, "How long a new connection to a server end has to prove itself (a "
                                             "valid frame, a whole HTTP request, a TLS client certificate) before "
                                             "it may be closed to make room when the end is full (default 5s).",
         _checked("connection-probation")],
        ["max-status-streams", None, None, "Live status pages open at once (each holds one connection); more "
                                           "are answered 503 (default {}).".format(DEFAULT_MAX_STREAMS),
         _checked("max-status-streams", _whole)],
        ["event-buffer", None, None, "Events held while an event tunnel's link is down (default 10000).",
         _checked("event-buffer", _whole)],
        ["event-buffer-age", None, None, "The oldest event held while the link is down (default 24h).",
         _checked("event-buffer-age")],
        ["event-window", None, None, "Events remembered to recognise one resent after a reconnect "
                                     "(default 10000).", _checked("event-window", _whole)],
        ["event-spool", None, None, "Where an event tunnel keeps undelivered events and what it has forwarded "
                                    "across restarts: a path prefix (default: beside --lockfile if given, else "
                                    "events-<sha1(in+out)> in $STATE_DIRECTORY, /var/lib/uhppoted-tunnel for root, "
                                    "or $XDG_STATE_HOME/uhppoted-tunnel)."],
        ["event-rate-limit", None, None, "Events per second allowed on average (default: no limit).",
         _checked("event-rate-limit", _number)],
        ["event-peer", None, None, "What the other half of an event tunnel is: tunnel (this one, which "
                                   "acknowledges events) or go (the Go tunnel, which does not: events are then "
                                   "sent once and not held) (default tunnel).", _checked("event-peer")],
        ["rate-limit-per-source", None, None, "Requests per second allowed to one sender (an application's IP "
                                              "address, on udp/listen and http/) (default: half of --rate-limit).",
         _checked("rate-limit-per-source", _number)],
        ["rate-limit-per-source-burst", None, None, "Requests one sender may send at once above its rate "
                                                    "(default: half of --rate-limit-burst).",
         _checked("rate-limit-per-source-burst", _whole)],
        ["max-send-queue", None, None, "Bytes queued for one stream peer before it counts as not reading and "
                                       "frames for it are dropped (default 262144).",
         _checked("max-send-queue", _whole)],
        ["max-pending-replies", None, None, "Requests a stream out end keeps waiting for replies (each up to 15 "
                                            "s); past it, requests are dropped (default 65536).",
         _checked("max-pending-replies", _whole)],
        ["stall-timeout", None, None, "How long a stream peer, or a status page client, may read nothing "
                                      "sent to it before it is disconnected (default 30s).", _checked("stall-timeout")],
        ["dead-peer-timeout", None, None, "How long a stream peer may leave data or keepalives unanswered "
                                          "before the connection is dropped (TCP_USER_TIMEOUT, default 1m).",
         _checked("dead-peer-timeout")],
        ["udp-receive-buffer", None, None, "The socket receive buffer of udp/listen and udp/event in ends, in "
                                           "bytes: what a burst can queue while the tunnel is busy "
                                           "(default 4194304).", _checked("udp-receive-buffer", _whole)],
        ["metrics", None, None, "Serve /metrics (Prometheus), /healthz, /readyz, /status.json and the live "
                                "status page (/) on this address, e.g. 127.0.0.1:9100 (or a Twisted endpoint "
                                "description)."],
        ["log-format", None, None, "text (the Go console layout) or json (one JSON object per line) "
                                   "(default text).", _checked("log-format")],
        ["unknown-serial", None, None, "What a host out end with many sites does with a request for a "
                                       "controller no site has answered for yet: all (send it to every site, "
                                       "default) or drop.", _checked("unknown-serial")],
    ] + [
        [option.name, None, None, option.help, _checked(option.name, option.read)]
        for plugin in PLUGINS for option in plugin.options if option.kind == PARAMETER
    ]

    def __init__(self, makers=None):
        """
        :param makers: the connector makers by prefix; the installed plugins
            when C{None}.
        """
        usage.Options.__init__(self)
        self._makers = makers
        #: the environment: systemd names a unit's folders in it
        self.environ = os.environ
        self.warnings = []
        #: one line per unknown TOML key, with the closest known key
        self.unknown_keys = []
        #: the sections of a file given without one
        self.file_sections = []
        self.ends = {}
        self.controllers = {}

    def parseOptions(self, options=None):
        """
        Parse the command line, which may start with Go's C{run} command.
        """
        if options is None:
            options = sys.argv[1:]
        if options and options[0] == "run":
            options = options[1:]
        usage.Options.parseOptions(self, options)

    def parseArgs(self, *args):
        if args:
            raise usage.UsageError("unexpected argument '{}'".format(args[0]))

    def postOptions(self):
        settings = self._file_settings()
        #: where each value came from, for error messages
        self.sources = {}
        for key, default in DEFAULTS.items():
            if key in FLAGS:
                if not self[key] and settings.get(key):
                    self.sources[key] = settings.source(key)
                self[key] = bool(self[key] or settings.get(key, default))
            elif self.get(key) is None:
                if key in settings:
                    self[key] = settings[key]
                    self.sources[key] = settings.source(key)
                else:
                    self[key] = default
        self.interfaces = settings.get("interfaces", {})
        self.controllers = settings.get("controllers", {})
        #: site identity -> [serial, ...] (the TOML [routes] table)
        self["routes"] = settings.get("routes", {})
        if self["debug"]:
            self["log-level"] = "debug"
        if self["freebind"]:
            try:
                bind.check_freebind()
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        self._check_ends()
        # a fair share by default: one application gets what the Go
        # tunnel, which charges replies too, really gives it
        if self["rate-limit-per-source"] is None:
            self["rate-limit-per-source"] = self["rate-limit"] / 2
        if self["rate-limit-per-source-burst"] is None:
            self["rate-limit-per-source-burst"] = max(1, self["rate-limit-burst"] // 2)
        self["events"] = any(maker.relaysEvents(parsed.prefix) for maker, parsed in self.ends.values())
        chosen_lockfile = bool(self["lockfile"])
        if not self["lockfile"]:
            self["lockfile"] = lockfile.default_path(self["in"], self["out"], lockfile.default_directory(self.environ))
        self._choose_spool(chosen_lockfile)

    def _choose_spool(self, chosen_lockfile):
        """
        Choose the event spool if none was given: beside a lockfile given
        by the user (round 1's rule), else in the state folder
        (L{eventfiles.state_directory}).
        """
        self.default_spool = not self["event-spool"]
        if self.default_spool:
            if chosen_lockfile:
                self["event-spool"] = os.path.splitext(self["lockfile"])[0]
                self.default_spool = False
            else:
                self["event-spool"] = eventfiles.default_spool(self["in"], self["out"], eventfiles.state_directory(self.environ))

    def checkFiles(self):
        """
        Check, before anything listens, the files the tunnel will write: in
        an event tunnel, that the event spool can be written (making the
        default state folder, mode 0700, if need be). Parsing alone never
        touches the disk; L{uhppoted_tunnel.app.launch.build} calls this first.

        :raise ValueError: one line naming the setting and the reason.
        """
        if not self["events"]:
            return
        try:
            eventfiles.check_spool(self["event-spool"], create=getattr(self, "default_spool", False))
        except ValueError as e:
            where = self.sources.get("event-spool", "--event-spool")
            raise ValueError("{} {}: {}".format(where, self["event-spool"], e)) from None

    def _file_settings(self):
        path, section = config.split_config_arg(self["config"]) if self["config"] else (None, None)
        try:
            settings = config.load(path, section, explicit=self["config"] is not None)
        except config.ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.warnings.extend(settings.warnings)
        self.unknown_keys = list(settings.unknown)
        if path is not None and section is None:
            self.file_sections = list(settings.sections)
        return settings

    def _check_ends(self):
        makers = spec.connector_makers() if self._makers is None else self._makers
        for role in (IN, OUT):
            text = self[role]
            where = self.sources.get(role, "--" + role)
            if not text and self.file_sections:
                raise usage.UsageError("--{} is required: --config {} has sections {}: use --config {}#{}".format(
                    role, self["config"], ", ".join(self.file_sections), self["config"], self.file_sections[0]))
            if not text:
                raise usage.UsageError("--{} is required (e.g. {})".format(
                    role, "udp/listen:0.0.0.0:60000" if role == IN else "tcp/server:0.0.0.0:12345"))
            interface = self.interfaces.get(role)
            maker, parsed = self._parse(text, makers, where)
            if interface and parsed.interface is None:
                binding = ":" if parsed.prefix.endswith(":") else "::"
                text = "{}{}{}:{}".format(parsed.prefix, binding, interface, parsed.address)
                maker, parsed = self._parse(text, makers, where + " (with interfaces." + role + ")")
            if role not in maker.roles(parsed.prefix):
                raise usage.UsageError("{}: '{}' cannot be an {} connector".format(where, parsed.kind, role))
            self.ends[role] = (maker, parsed)

    @staticmethod
    def _parse(text, makers, where):
        try:
            return parse(text, makers)
        except ValueError as e:
            raise usage.UsageError("{}: {}".format(where, e)) from None

    def getUsage(self, width=None):
        """
        The help: the general options first, then each connector plugin's
        options under its title.
        """
        return grouped_usage(self, PLUGINS, width)

    def _append(self, key, flag, text):
        try:
            values = config.KEYS[key](text)
        except ValueError as e:
            raise usage.UsageError("--{}: {}".format(flag, e)) from None
        self[key] = list(self.get(key) or ()) + values

    def opt_version(self):
        """
        Print the version and exit.
        """
        from uhppoted_tunnel import __version__

        print("uhppoted-tunnel", __version__)
        raise SystemExit(0)


def _appender(option):
    """
    The C{opt_} method of a repeatable option: each value adds to the list.
    """

    def append(self, text):
        self._append(option.name, option.command_line, text)

    append.__doc__ = option.help
    return append


for _option in [option for plugin in PLUGINS for option in plugin.options if option.kind == LIST]:
    setattr(Options, "opt_" + _option.command_line.replace("-", "_"), _appender(_option))
del _option


def grouped_usage(options, plugins, width=None):
    """
    The C{--help} text of L{usage.Options} C{options}, its options in
    groups: those no plugin declares, then one group per plugin that
    declares any, under its title.

    :param plugins: the L{uhppoted_tunnel.interfaces.IConnectorPlugin}
        providers.
    """
    width = width or int(os.environ.get("COLUMNS", "80"))
    shorts = {long: short for short, long in options.synonyms.items() if short != long and len(short) == 1}
    described = {}
    for name in options.longOpt:
        kind = "parameter" if name.endswith("=") else "flag"
        name = name.rstrip("=")
        described[name] = {"long": name, "short": shorts.get(name), "doc": options.docs[name], "optType": kind,
                           "default": options.defaults.get(name), "dispatch": options._dispatch.get(name)}
    groups = []
    for plugin in plugins:
        names = [option.command_line for option in plugin.options if option.command_line in described]
        if names:
            groups.append(("{} options:".format(plugin.title), [described.pop(name) for name in names]))
    groups.insert(0, ("Options:", list(described.values())))
    text = "\n".join("{}\n{}".format(title, "".join(usage.docMakeChunks(found, width))) for title, found in groups)
    longdesc = getattr(options, "longdesc", "")
    if longdesc:
        text += "\n" + "\n".join(textwrap.wrap(longdesc, width)).strip() + "\n"
    return text
