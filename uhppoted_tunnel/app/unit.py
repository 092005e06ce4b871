# -*- test-case-name: tests.unit.test_daemonize -*-
"""
The systemd unit C{uhppoted-tunnel daemonize} writes: its name from the
label (C{uhppoted-tunnel.service} for the default label,
C{uhppoted-tunnel-LABEL.service} for another, the Go tunnel's names), its
text (C{Type=notify}, C{check} before C{run}, the hardening every unit
written or shipped has), and how an argument is quoted in it.

Pure text: nothing here reads or writes a file.
"""

import re

#: The unit name for the default label.
SERVICE = "uhppoted-tunnel"

#: Where units are written, and the folder whose presence says systemd runs.
UNIT_DIR = "/etc/systemd/system"
SYSTEMD_RUNNING = "/run/systemd/system"

#: The hardening every unit written or shipped has, in order.
HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
# glibc's getaddrinfo asks the kernel about local addresses over netlink
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# a call outside the filter fails (EPERM) rather than killing the tunnel
SystemCallErrorNumber=EPERM
UMask=0077
"""

#: No capability at all, for tunnels that bind no interface.
NO_CAPABILITIES = """\
CapabilityBoundingSet=
AmbientCapabilities=
PrivateUsers=yes
"""

#: SO_BINDTODEVICE (C{::IFACE:}) needs CAP_NET_RAW in the host's user
#: namespace, so no PrivateUsers= either.
BIND_TO_DEVICE = """\
# ::IFACE: binding (SO_BINDTODEVICE) needs CAP_NET_RAW
CapabilityBoundingSet=CAP_NET_RAW
AmbientCapabilities=CAP_NET_RAW
"""

TEMPLATE = """\
# Written by uhppoted-tunnel daemonize; remove with
#   uhppoted-tunnel undaemonize{label_flag}
[Unit]
Description=UHPPOTE access controller UDP tunnel ({name})
Documentation=https://github.com/uhppoted/uhppoted-tunnel
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStartPre={check}
ExecStart={run}
ExecReload=/bin/kill -HUP $MAINPID
{workdir}Restart=on-failure
RestartSec=5
WatchdogSec=30s
User={user}
{group}DynamicUser=yes
StateDirectory=uhppoted-tunnel
RuntimeDirectory=uhppoted-tunnel/%N
LimitNOFILE=4096
{capabilities}{hardening}
[Install]
WantedBy=multi-user.target
"""


_LABEL = re.compile(r"[A-Za-z0-9_.-]+")


class DaemonizeError(Exception):
    """
    Refused, or failed: C{str()} is one line; C{code} the exit code.
    """

    def __init__(self, message, code=2):
        Exception.__init__(self, message)
        self.code = code


def unit_name(label):
    """
    :param label: C{--label}: C{uhppoted-tunnel}, C{site}, C{uhppoted-tunnel-site}.
    :return: the unit's name without C{.service}: C{uhppoted-tunnel} for the
        default, C{uhppoted-tunnel-LABEL} otherwise (as the Go tunnel names
        it).
    :raise DaemonizeError: for a label that cannot be part of a unit name.
    """
    if not label or not _LABEL.fullmatch(label):
        raise DaemonizeError("--label '{}': use letters, digits, '_', '.' and '-' only".format(label))
    if label == SERVICE or label.startswith(SERVICE + "-"):
        return label
    return SERVICE + "-" + label


#: What systemd would read as syntax whatever the quoting: a line break or
#: any other control character (a newline ends the line, and with it the
#: quoted word, so what follows would be a unit line of its own).
_UNIT_SYNTAX = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def refuse_unit_syntax(flag, value):
    """
    Refuse a value to be written into a unit that systemd would read as
    syntax rather than as the value: a newline or any other control
    character, or a lone C{;} (which would end the command).

    :param flag: what names the value for the user, e.g. C{--in}.
    :raise DaemonizeError: one line naming the flag (exit 2).
    """
    found = _UNIT_SYNTAX.search(value)
    if found is not None:
        raise DaemonizeError("{}: the value holds a control character (U+{:04X}, e.g. a newline), which systemd "
                             "would read as the end of a line in the unit: refused".format(flag, ord(found.group())))
    if value == ";":
        raise DaemonizeError("{}: a lone ';' would end the command in the unit: refused".format(flag))


def quote(arg):
    """
    Quote one argument for a unit's C{ExecStart=}: C{%} and C{$} doubled
    (specifiers and variables), and double quotes around anything with a
    space, quote or backslash.
    """
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(name, executable, arguments, user, group=None, workdir=None, bind_device=False, label_flag=""):
    """
    The text of a unit.

    :param name: the unit's name, without C{.service}.
    :param executable: the C{uhppoted-tunnel} command.
    :param arguments: the C{run} arguments.
    :param user: C{User=}; C{group}: C{Group=} or C{None}.
    :param workdir: C{WorkingDirectory=}, or C{None}.
    :param bind_device: whether an end binds to an interface (C{::IFACE:}),
        which needs C{CAP_NET_RAW}.
    """
    command = quote(executable)
    args = " ".join(quote(arg) for arg in arguments)
    return TEMPLATE.format(
        name=name,
        label_flag=label_flag,
        check="{} check {}".format(command, args).rstrip(),
        run="{} run {}".format(command, args).rstrip(),
        workdir="WorkingDirectory={}\n".format(quote(workdir)) if workdir else "",
        user=user,
        group="Group={}\n".format(group) if group else "",
        capabilities=BIND_TO_DEVICE if bind_device else NO_CAPABILITIES,
        hardening=HARDENING,
    )


def under_home(path):
    """
    Whether a path is in a folder C{ProtectHome=yes} hides.
    """
    return re.match(r"/(home|root|run/user)(/|$)", path) is not None
