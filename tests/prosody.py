"""
A real XMPP server for the C{xmpp/} tests and the load generator: Debian's
prosody, on 127.0.0.1, with its own configuration, certificate, accounts,
data, pid file and log in one folder.

L{Prosody} writes the files and creates the accounts; whoever runs the
server starts L{Prosody.command} (in the foreground), waits for
L{Prosody.READY} in its output (or for the port), and stops it with
SIGTERM. It has no s2s, no HTTP and one VirtualHost (C{localhost}), whose
certificate the test CA in C{certs/} signs; the modules are those of
Debian's default configuration that matter to a tunnel (C{mod_limits} at
its defaults: 10 KiB/s per client connection), and the archive (MAM) and
carbons, so that a test can check that the tunnel's frames are never
stored.

Prosody refuses to run as root unless the configuration says
C{run_as_root = true} (prosody 0.12: https://prosody.im/doc/root), which
it says when the tests run as root; run as anyone else, prosody runs as
that user. Either way C{prosodyctl} then writes the accounts as the same
user, not as C{prosody}.

Only the standard library and L{tests.certs}: the load generator imports
this too.
"""

import os
import shutil
import socket
import subprocess

from tests import certs

LOOPBACK = "127.0.0.1"

#: The line prosody logs once it takes client connections (group 1: the port).
READY = r"Activated service 'c2s' on \[127\.0\.0\.1\]:(\d+)"

_CONFIG = """\
-- written by tests/prosody.py
{root}pidfile = {pidfile}
data_path = {data}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; {tls}"disco"; "ping"; "limits"; "carbons"; "mam"; }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = {starttls}
log = {{
    {{ levels = {{ min = "info" }}, to = "console" }};
    {{ levels = {{ min = "info" }}, to = "file", filename = {log} }};
}}
ssl = {{ certificate = {cert}; key = {key}; }}

VirtualHost {domain}
"""


def _lua(text):
    """A Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def free_port():
    """A loopback TCP port that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def installed():
    """
    :return: the paths of C{prosody} and C{prosodyctl}, or C{None} when
        either is missing.
    """
    found = shutil.which("prosody"), shutil.which("prosodyctl")
    return found if all(found) else None


class Prosody:
    """
    A prosody server's files in a folder, and its accounts.

    :ivar port: its client (c2s) port on 127.0.0.1.
    :ivar ca: the CA certificate that signed its certificate, for
        C{--ca-cert}.
    :ivar config: its configuration file.
    """

    def __init__(self, directory, domain="localhost", port=None, paths=None, starttls=True):
        """
        :param directory: the folder for everything (made if need be).
        :param domain: its one VirtualHost.
        :param port: its client port (default: a free one).
        :param paths: C{(prosody, prosodyctl)} (default: from C{PATH}).
        :param starttls: whether it offers (and requires) STARTTLS; a
            server without is one an C{xmpp/} end must refuse.
        """
        self.directory = os.path.abspath(directory)
        self.domain = domain
        self.port = port or free_port()
        self.prosody, self.prosodyctl = paths or installed()
        self.data = os.path.join(self.directory, "data")
        self.log = os.path.join(self.directory, "prosody.log")
        os.makedirs(self.data, exist_ok=True)
        made = certs.make(os.path.join(self.directory, "certs"), server_names=(domain,))
        self.ca = made["ca"][0]
        cert, key = made["server"]
        self.config = os.path.join(self.directory, "prosody.cfg.lua")
        with open(self.config, "w") as f:
            f.write(_CONFIG.format(
                root="run_as_root = true\n" if os.geteuid() == 0 else "",
                tls='"tls"; ' if starttls else "", starttls="true" if starttls else "false",
                pidfile=_lua(os.path.join(self.directory, "prosody.pid")), data=_lua(self.data), port=self.port,
                log=_lua(self.log), cert=_lua(cert), key=_lua(key), domain=_lua(domain)))

    @property
    def address(self):
        """
        Its client port as C{--xmpp-server} takes it.
        """
        return "{}:{}".format(LOOPBACK, self.port)

    def command(self):
        """
        :return: the command line that runs it in the foreground.
        """
        return [self.prosody, "--config", self.config, "-F"]

    def register(self, user, password):
        """
        Create an account (C{prosodyctl register}).

        :return: its JID.
        :raise RuntimeError: with prosodyctl's output if it fails.
        """
        done = subprocess.run([self.prosodyctl, "--config", self.config, "register", user, self.domain, password],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError("prosodyctl register {} failed ({}):\n{}".format(
                user, done.returncode, done.stdout.decode("utf-8", "replace")))
        return "{}@{}".format(user, self.domain)

    def password_file(self, user, password):
        """
        Write a password file (mode 0600) for C{--xmpp-password-file}.

        :return: its path.
        """
        path = os.path.join(self.directory, user + ".password")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(password + "\n")
        return path

    def stored(self, store):
        """
        What the server keeps in one of its stores for the domain's
        accounts (C{offline}, C{archive}): the files holding anything.

        :return: a list of paths.
        """
        folder = os.path.join(self.data, self.domain.replace(".", "%2e"), store)
        if not os.path.isdir(folder):
            return []
        return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
                if os.path.getsize(os.path.join(folder, name))]
