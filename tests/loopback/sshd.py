# -*- test-case-name: tests.loopback.test_sshproxy -*-
"""
OpenSSH's server for the tests that dial through SSH: Debian's C{sshd},
started by each test on 127.0.0.1 with its own configuration, host key,
C{authorized_keys} and pid file in the test's folder (C{-D -e -f}), and
the keys and C{known_hosts} a site uses with it.
"""

import getpass
import os
import shutil
import signal
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.conch.ssh.keys import Key
from twisted.internet.defer import inlineCallbacks

from tests.loopback.processes import WaitTimeout, free_port, spawn, workdir
from tests.tools import require


def write_key(path, kind="ed25519", passphrase=None):
    """
    Write a new OpenSSH private key (mode 0600) and its C{.pub}.

    :return: the conch L{Key}.
    """
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    data = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    key = Key(private)
    with open(path + ".pub", "wb") as f:
        f.write(key.public().toString("openssh") + b"\n")
    return key


def descendants(pid):
    """
    The processes under C{pid}, from C{/proc}.
    """
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SSHServer:
    """
    A running sshd and its files.

    :ivar port: its port.
    :ivar host_key: its host L{Key}.
    :ivar identity: the path of the site's private key.
    :ivar known_hosts: the path of a known_hosts file listing the server.
    :ivar process: the L{LineProtocol}.
    """

    def __init__(self, testcase, directory, port, extra):
        self.testcase = testcase
        self.directory = directory
        self.port = port
        self.extra = list(extra)
        self.command = require("sshd", "openssh-server")
        self.host_key_path = os.path.join(directory, "ssh_host_ed25519_key")
        self.host_key = write_key(self.host_key_path)
        self.identity = os.path.join(directory, "id_ed25519")
        user_key = write_key(self.identity)
        with open(os.path.join(directory, "authorized_keys"), "wb") as f:
            f.write(user_key.public().toString("openssh") + b"\n")
        self.known_hosts = os.path.join(directory, "known_hosts")
        with open(self.known_hosts, "wb") as f:
            f.write(b"[127.0.0.1]:%d " % port + self.host_key.public().toString("openssh") + b"\n")
        self.config = os.path.join(directory, "sshd_config")
        self.process = None

    def write_config(self):
        lines = [
            "Port {}".format(self.port),
            "ListenAddress 127.0.0.1",
            "HostKey {}".format(self.host_key_path),
            "PidFile {}".format(os.path.join(self.directory, "sshd.pid")),
            "AuthorizedKeysFile {}".format(os.path.join(self.directory, "authorized_keys")),
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowUsers {}".format(getpass.getuser()),
            "LogLevel VERBOSE",
        ] + self.extra
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    @inlineCallbacks
    def start(self):
        """
        Start sshd; fires once it listens.
        """
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.write_config()
        self.process = spawn(self.testcase, [self.command, "-D", "-e", "-f", self.config], "sshd")
        # before spawn's own cleanup: a session's process holds sshd's
        # output open, so that sshd alone killed never ends
        self.testcase.addCleanup(self.kill)
        yield self.process.waitFor(r"Server listening on 127\.0\.0\.1 port {}".format(self.port))

    def kill(self):
        """
        Kill sshd and every process it started (the sessions too, as
        C{systemctl restart ssh} does): the site's SSH connection is cut.

        :return: a Deferred firing once sshd has ended.
        """
        if not self.process.running:
            return self.process.exited()
        for pid in [self.process.pid] + descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.process.exited()

    @property
    def url(self):
        return "ssh://{}@127.0.0.1:{}".format(getpass.getuser(), self.port)

    def authorize(self, path, kind, passphrase=None):
        """
        Write a new key at C{path} and authorise it (beside the first).
        """
        key = write_key(path, kind, passphrase)
        with open(os.path.join(self.directory, "authorized_keys"), "ab") as f:
            f.write(key.public().toString("openssh") + b"\n")

    def flags(self):
        """
        The site's flags to dial through this server.
        """
        return ["--proxy", self.url, "--ssh-identity", self.identity, "--ssh-known-hosts", self.known_hosts]


@inlineCallbacks
def start_sshd(testcase, *extra, name="sshd"):
    """
    Start sshd on a free loopback port (again on another if the port was
    taken before it could listen).

    :param extra: more sshd_config lines (C{AllowTcpForwarding no}).
    :return: a Deferred firing with the L{SSHServer} once it listens.
    """
    directory = os.path.join(workdir(testcase), name)
    os.makedirs(directory, exist_ok=True)
    for attempt in range(3):
        server = SSHServer(testcase, directory, free_port(), extra)
        try:
            yield server.start()
        except WaitTimeout:
            if server.process.running or attempt == 2:
                raise
            continue
        return server


@inlineCallbacks
def start_agent(testcase, *keys):
    """
    Start ssh-agent on a socket in the test's folder, holding C{keys}.

    :return: a Deferred firing with the socket's path.
    """
    agent = require("ssh-agent", "openssh-client")
    add = require("ssh-add", "openssh-client")
    # a socket's path is short (108 bytes): a private folder of its own
    folder = tempfile.mkdtemp(prefix="uht-agent-")
    testcase.addCleanup(shutil.rmtree, folder, True)
    path = os.path.join(folder, "agent.sock")
    process = spawn(testcase, [agent, "-D", "-a", path], "ssh-agent")
    yield process.waitFor(r"SSH_AUTH_SOCK=")
    for key in keys:
        adding = spawn(testcase, [add, key], "ssh-add", env={"SSH_AUTH_SOCK": path})
        code = yield adding.exited()
        if code != 0:
            raise AssertionError("ssh-add {} failed: {}".format(key, adding.output()))
    return path
