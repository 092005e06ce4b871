#!/usr/bin/env python3
"""
A closed-loop load generator for uhppoted-tunnel, end to end.

It starts an emulator, a host half and a site half on loopback::

    clients -> udp/listen:P1 [host] tcp/server:P2 <- tcp/client:P2 [site] udp/broadcast:P3 -> emulator P3

and runs N clients against the host's UDP port. Each client sends a 64-byte
get-controller request to one of two emulated controllers (alternating per
client), waits for the reply, and sends the next one at once. A reply whose
function or serial is not the request's counts as "wrong" (the client keeps
waiting for the right one); a request unanswered after 2 s counts as a
"timeout" and the client moves on.

Before the tunnel run the same clients run straight at the emulator (the
"direct" path): that is what the load generator and the emulator can do with
no tunnel in between, so a tunnel figure close to it means the bench, not
the tunnel, was the limit.

One JSON line per tunnel goes to stdout; progress and diagnostics to stderr.
Only the standard library is needed (the twisted and asyncio engines import
their framework when chosen; --transport xmpp starts Debian's prosody with
tests/prosody.py, which makes its certificate with cryptography). Linux
only: it reads /proc.

    python bench/loadgen.py --clients 16 --duration 10 --udp-timeout 1s
    python bench/loadgen.py --clients 4 --duration 10 \\
        --compare "/opt/uhppoted-tunnel --in {in} --out {out} --udp-timeout {udp_timeout} --console"
"""

import argparse
import ctypes
import getpass
import json
import math
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

LOCALHOST = "127.0.0.1"
SERIALS = (405419896, 303986753)
GET_CONTROLLER = 0x94
SOM = 0x17

#: A request unanswered this long is a timeout; the client moves on.
REQUEST_TIMEOUT = 2.0
#: How often requests are checked for timeouts (one sweep over all clients).
SWEEP_INTERVAL = 0.1
#: How often the tunnel halves' memory is read.
MEMORY_INTERVAL = 0.5
#: How long the tunnel may take to relay its first request.
READY_TIMEOUT = 20.0
#: How long a child has after SIGTERM before SIGKILL.
STOP_GRACE = 5.0
#: The direct run is at most this long.
DIRECT_MAX = 5.0

now = time.perf_counter


def log(message, *args):
    sys.stderr.write("loadgen: " + (message % args if args else message) + "\n")
    sys.stderr.flush()


class NotReady(Exception):
    """A tunnel (or the emulator) did not become ready in time."""


def request_for(serial):
    packet = bytearray(64)
    packet[0] = SOM
    packet[1] = GET_CONTROLLER
    struct.pack_into("<I", packet, 4, serial)
    return bytes(packet)


def free_port(kind):
    """A port nobody is using now (bind port 0 and close)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# /proc

def _proc_status(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM) in MB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu():
    """Busy CPU seconds of the whole machine, all cores (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS  # less idle and iowait; guest is in user
    except (OSError, ValueError, IndexError):
        return None


def self_cpu():
    t = os.times()
    return t.user + t.system


def tcp_listening(port):
    """True if something listens on TCP 127.0.0.1:port (or any address)."""
    wanted = ":%04X" % port
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(wanted) and parts[3] == "0A":
                        return True
        except OSError:
            continue
    return False


# --------------------------------------------------------------------------
# child processes


def _die_with_parent():
    """In the child: get SIGTERM if the load generator dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Child:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.logfile = os.path.join(workdir, name + ".log")
        self._out = open(self.logfile, "wb")
        log("starting %s: %s", name, " ".join(shlex.quote(a) for a in argv))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                     env=env, cwd=workdir, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def output(self, limit=2000):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")[-limit:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_GRACE; always reaps."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                log("%s did not stop on SIGTERM: killing it", self.name)
                self.proc.kill()
                self.proc.wait(STOP_GRACE)
            except OSError:
                pass
        self._out.close()
        return self.proc.returncode


#: --reactor: the halves' Twisted reactor (the tunnel's default is epoll, asyncio for a half with a gRPC end)
REACTOR = "default"


def tunnel_command():
    if REACTOR in ("asyncio", "uvloop"):
        loop = ("import asyncio, uvloop; asyncio.set_event_loop(uvloop.new_event_loop()); "
                if REACTOR == "uvloop" else "")
        return [sys.executable, "-c", loop + "from twisted.internet import asyncioreactor; asyncioreactor.install(); "
                "import sys; from uhppoted_tunnel.app.cli import main; sys.exit(main())"]
    script = os.path.join(os.path.dirname(sys.executable), "uhppoted-tunnel")
    if os.path.exists(script) and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "uhppoted_tunnel.app.cli"]


def child_env():
    env = dict(os.environ)
    paths = [REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_emulator(workdir, deadline=10.0):
    argv = [sys.executable, "-m", "uhppoted_tunnel.emulator", "--bind", LOCALHOST + ":0"]
    for serial in SERIALS:
        argv += ["--controller", str(serial)]
    child = Child("emulator", argv, workdir, child_env())
    stop_at = now() + deadline
    while now() < stop_at:
        match = re.search(r"emulator listening on ([\d.]+):(\d+)", child.output())
        if match:
            return child, (match.group(1), int(match.group(2)))
        if not child.alive():
            break
        time.sleep(0.05)
    child.stop()
    raise NotReady("the emulator did not start:\n" + child.output())


def probe(target, deadline):
    """Send get-controller to target until a matching reply; True if one came."""
    request = request_for(SERIALS[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        while now() < deadline:
            s.sendto(request, target)
            ready, _, _ = select.select([s], [], [], 0.25)
            while ready:
                data = s.recv(2048)
                if len(data) >= 8 and data[1] == GET_CONTROLLER and data[4:8] == request[4:8]:
                    return True
                ready, _, _ = select.select([s], [], [], 0)
    return False


# --------------------------------------------------------------------------
# the transports a pair can run over (--transport)

class TCPLink:
    """
    How a pair's two halves meet: the host's out connector, the site's in
    connector, the flags each half adds, when the host is ready for the
    site, and anything to stop afterwards. This one is plain TCP; another
    transport subclasses it and registers in L{TRANSPORTS}.
    """

    kind = "tcp"

    def __init__(self, workdir, port):
        self.workdir = workdir
        self.port = port
        self.host_out = "%s/server:%s:%d" % (self.kind, LOCALHOST, port)
        self.site_in = "%s/client:%s:%d" % (self.kind, LOCALHOST, port)

    def args(self, half):
        """Extra flags for C{half} ("host" or "site")."""
        return []

    def ready(self):
        """Whether the host half is ready for the site half to start."""
        return tcp_listening(self.port)

    def stop(self):
        """Stop whatever the transport started (after both halves)."""

    def __str__(self):
        return "%s %d" % (self.kind, self.port)


class TLSLink(TCPLink):
    """
    TLS with client certificates (--client-auth), made in the work folder
    by tests/certs.py (which needs the cryptography package the tunnel
    installs).
    """

    kind = "tls"

    def __init__(self, workdir, port):
        TCPLink.__init__(self, workdir, port)
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        from tests import certs

        # in the work folder itself, which the run empties at the end
        self.files = certs.make(workdir, prefix="bench-")

    def args(self, half):
        role = "server" if half == "host" else "client"
        cert, key = self.files[role]
        return ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key] + (
            ["--client-auth"] if role == "server" else [])


class WSLink(TCPLink):
    """A WebSocket: one binary message per frame, on the default path."""

    kind = "ws"


class WSSLink(TLSLink):
    """A WebSocket over TLS with client certificates."""

    kind = "wss"


class ZMQLink(TCPLink):
    """
    ZeroMQ as the README recommends it: CURVE, with the site's key
    authorised by the host (the keys made here with pyzmq, which the
    tunnel needs anyway).
    """

    kind = "zmq"
    curve = True

    def __init__(self, workdir, port):
        TCPLink.__init__(self, workdir, port)
        self.flags = {"host": [], "site": []}
        if self.curve:
            import zmq.auth

            keys = os.path.join(workdir, "zmq-keys")
            authorized = os.path.join(keys, "authorized")
            os.makedirs(authorized, exist_ok=True)
            server_public, server_secret = zmq.auth.create_certificates(keys, "host")
            client_public, client_secret = zmq.auth.create_certificates(keys, "site")
            os.replace(client_public, os.path.join(authorized, "site.key"))
            self.flags = {"host": ["--zmq-server-key", server_secret, "--zmq-authorized-keys", authorized],
                          "site": ["--zmq-server-key", server_public, "--zmq-client-key", client_secret]}

    def args(self, half):
        return self.flags[half]

    def __str__(self):
        return "%s%s %d" % (self.kind, " (CURVE)" if self.curve else "", self.port)


class PlainZMQLink(ZMQLink):
    """
    ZeroMQ without CURVE, to see what the encryption costs.
    """

    curve = False


class GRPCLink(TCPLink):
    """The pair over gRPC: one Relay call (grpc/server and grpc/client)."""

    kind = "grpc"


class GRPCSLink(GRPCLink):
    """
    The pair over gRPC with TLS and client certificates (grpcs/): the
    certificates are made in the work directory with the tests' recipe.
    """

    kind = "grpcs"

    def __init__(self, workdir, port):
        GRPCLink.__init__(self, workdir, port)
        sys.path.insert(0, REPO)
        from tests import certs

        self.files = certs.make(os.path.join(workdir, "certs"))

    def args(self, half):
        role = "server" if half == "host" else "client"
        cert, key = self.files[role]
        flags = ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key]
        return flags + (["--client-auth"] if half == "host" else [])


class XMPPLink(TCPLink):
    """
    The halves log in to a prosody server on 127.0.0.1 as two accounts
    (tests/prosody.py: its own configuration, certificate and data in the
    workdir, prosody's default limits), which relays between them. The
    server is up, with both accounts, before the host half starts; the
    halves find each other by presence, in whichever order they log in.
    """

    kind = "xmpp"
    USERS = ("host", "site")

    def __init__(self, workdir, port):
        TCPLink.__init__(self, workdir, port)
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        from tests import prosody

        if prosody.installed() is None:
            raise NotReady("prosody is not installed (Debian package prosody)")
        self.folder = os.path.join(workdir, "prosody")
        self.server = prosody.Prosody(self.folder, port=port)
        self.host_out = "xmpp/client:host@localhost"
        self.site_in = "xmpp/client:site@localhost"
        self.passwords = {}
        for user in self.USERS:
            self.server.register(user, user + "-secret")
            self.passwords[user] = self.server.password_file(user, user + "-secret")
        self.child = Child("prosody", self.server.command(), workdir, child_env())
        deadline = now() + READY_TIMEOUT
        while not tcp_listening(port):
            if not self.child.alive() or now() > deadline:
                output = self.child.output()
                self.stop()
                raise NotReady("prosody did not start:\n" + output)
            time.sleep(0.05)

    def args(self, half):
        peer = self.USERS[half == "host"]
        return ["--xmpp-peer", peer + "@localhost", "--xmpp-server", self.server.address,
                "--ca-cert", self.server.ca, "--xmpp-password-file", self.passwords[half]]

    def ready(self):
        return True

    def stop(self):
        self.child.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __str__(self):
        return "xmpp via prosody %s" % self.server.address


class SSHLink(TCPLink):
    """
    Plain TCP, the site dialling through Debian's sshd (--proxy ssh://) on
    127.0.0.1, started here with its own configuration, host key and
    authorized_keys in the work folder (as tests/loopback/sshd.py does).
    """

    def __init__(self, workdir, port):
        TCPLink.__init__(self, workdir, port)
        sshd = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/sbin")
        if sshd is None:
            raise NotReady("sshd is not installed (Debian package openssh-server)")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        folder = os.path.join(workdir, "sshd")
        os.makedirs(folder, exist_ok=True)
        public = {}
        for name in ("host_key", "id_ed25519"):
            private = ed25519.Ed25519PrivateKey.generate()
            path = os.path.join(folder, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
            public[name] = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                             serialization.PublicFormat.OpenSSH)
        self.ssh_port = free_port(socket.SOCK_STREAM)
        self.identity = os.path.join(folder, "id_ed25519")
        self.known_hosts = os.path.join(folder, "known_hosts")
        with open(self.known_hosts, "wb") as f:
            f.write(b"[%s]:%d %s\n" % (LOCALHOST.encode(), self.ssh_port, public["host_key"]))
        with open(os.path.join(folder, "authorized_keys"), "wb") as f:
            f.write(public["id_ed25519"] + b"\n")
        config = os.path.join(folder, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join(["Port %d" % self.ssh_port, "ListenAddress " + LOCALHOST,
                               "HostKey " + os.path.join(folder, "host_key"),
                               "PidFile " + os.path.join(folder, "sshd.pid"),
                               "AuthorizedKeysFile " + os.path.join(folder, "authorized_keys"),
                               "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                               "PermitRootLogin prohibit-password", "AllowTcpForwarding yes"]) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.child = Child("sshd", [sshd, "-D", "-e", "-f", config], workdir, child_env())
        deadline = now() + READY_TIMEOUT
        while not tcp_listening(self.ssh_port):
            if not self.child.alive() or now() > deadline:
                output = self.child.output()
                self.stop()
                raise NotReady("sshd did not start:\n" + output)
            time.sleep(0.05)

    def args(self, half):
        if half == "host":
            return []
        return ["--proxy", "ssh://%s@%s:%d" % (getpass.getuser(), LOCALHOST, self.ssh_port),
                "--ssh-identity", self.identity, "--ssh-known-hosts", self.known_hosts]

    def stop(self):
        self.child.stop()

    def __str__(self):
        return "tcp %d via sshd %d" % (self.port, self.ssh_port)



class NATSLink(TCPLink):
    """
    The halves meet on a nats-server on 127.0.0.1 (Debian's nats-server,
    one node, no JetStream: a request pair needs none), started here with
    its own configuration in the workdir. The site lists the emulator's
    controllers (--nats-serial), so that unicasts reach it from the first.
    """

    kind = "nats"

    def __init__(self, workdir, port):
        TCPLink.__init__(self, workdir, port)
        server = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/sbin")
        if server is None:
            raise NotReady("nats-server is not installed (Debian package nats-server)")
        config = os.path.join(workdir, "nats.conf")
        with open(config, "w") as f:
            f.write("listen: %s:%d\n" % (LOCALHOST, port))
        self.host_out = self.site_in = "nats/client:%s:%d" % (LOCALHOST, port)
        self.child = Child("nats-server", [server, "-c", config], workdir, child_env())
        deadline = now() + READY_TIMEOUT
        while not tcp_listening(port):
            if not self.child.alive() or now() > deadline:
                output = self.child.output()
                self.stop()
                raise NotReady("nats-server did not start:\n" + output)
            time.sleep(0.05)

    def args(self, half):
        return ["--nats-serial", ",".join(str(serial) for serial in SERIALS)] if half == "site" else []

    def stop(self):
        self.child.stop()

    def __str__(self):
        return "nats via nats-server %s:%d" % (LOCALHOST, self.port)


#: the transports the Go tunnel has too: a --compare pair runs over the same one (else over tcp)
GO_TRANSPORTS = ("tcp", "tls")
#: --transport NAME: a class like L{TCPLink}, made with (workdir, port).
TRANSPORTS = {"tcp": TCPLink, "tls": TLSLink, "ws": WSLink, "wss": WSSLink, "zmq": ZMQLink,
              "zmq-plain": PlainZMQLink, "grpc": GRPCLink, "grpcs": GRPCSLink, "xmpp": XMPPLink,
              "tcp-ssh": SSHLink, "nats": NATSLink}


class Tunnel:
    """A host half and a site half, started and stopped together."""

    def __init__(self, kind, workdir, emulator, udp_timeout, template=None, transport="tcp", metrics=False):
        self.kind = kind
        self.workdir = workdir
        self.emulator = emulator
        self.udp_timeout = udp_timeout
        self.template = template
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port(socket.SOCK_STREAM)
        self.link = TRANSPORTS[transport](workdir, self.tcp_port)
        #: --metrics: each half serves its metrics on a free port of its own
        self.metrics = {half: free_port(socket.SOCK_STREAM) for half in ("host", "site")} if metrics else {}
        self.host = self.site = None

    def _argv(self, half, in_, out):
        lock = os.path.join(self.workdir, "%s-%s.pid" % (self.kind, half))
        if self.template is None:
            # An empty TOML file, so that a machine's /etc/uhppoted/uhppoted-tunnel.toml cannot change the run.
            config = os.path.join(self.workdir, "empty.toml")
            open(config, "w").close()
            return tunnel_command() + [
                "--in", in_, "--out", out, "--udp-timeout", self.udp_timeout,
                "--rate-limit", "1000000", "--rate-limit-burst", "1000000",
                "--log-level", "warn", "--lockfile", lock, "--config", config,
            ] + self.link.args(half) + (["--metrics", "%s:%d" % (LOCALHOST, self.metrics[half])]
                                        if half in self.metrics else [])
        fields = {"in": in_, "out": out, "udp_timeout": self.udp_timeout, "lockfile": lock}
        argv = []
        for arg in shlex.split(self.template):
            # {link_args}: the transport's own flags (the TLS certificates), which the Go tunnel spells alike
            argv.extend(self.link.args(half) if arg == "{link_args}" else [arg.format(**fields)])
        return argv

    def start(self):
        host_in = "udp/listen:%s:%d" % (LOCALHOST, self.udp_port)
        host_out, site_in = self.link.host_out, self.link.site_in
        site_out = "udp/broadcast:%s:%d" % self.emulator
        env = child_env()
        self.host = Child(self.kind + "-host", self._argv("host", host_in, host_out), self.workdir, env)
        # The site half dials once and retries only after 5 s: start it once the host listens.
        deadline = now() + READY_TIMEOUT
        while not self.link.ready():
            if not self.host.alive() or now() > deadline:
                raise NotReady("%s host half did not get ready (%s):\n%s"
                               % (self.kind, self.link, self.host.output()))
            time.sleep(0.05)
        self.site = Child(self.kind + "-site", self._argv("site", site_in, site_out), self.workdir, env)
        if not probe((LOCALHOST, self.udp_port), deadline):
            raise NotReady("%s tunnel relayed nothing within %gs\n--- host:\n%s\n--- site:\n%s"
                           % (self.kind, READY_TIMEOUT, self.host.output(), self.site.output()))
        log("%s tunnel ready: udp %d -> %s -> emulator %d", self.kind, self.udp_port, self.link, self.emulator[1])

    def stop(self):
        for child in (self.site, self.host):
            if child is not None:
                code = child.stop()
                if code not in (0, -signal.SIGTERM, None):
                    log("%s exited with %s:\n%s", child.name, code, child.output(800))
        self.link.stop()


# --------------------------------------------------------------------------
# the clients

class Clients:
    """
    The state of N closed-loop clients and the figures of one run.

    Engines do the I/O and call L{reply} for each datagram and L{sweep}
    every L{SWEEP_INTERVAL}; both return what to send next.
    """

    def __init__(self, n, measure_from, measure_to):
        self.n = n
        self.requests = [request_for(SERIALS[i % 2]) for i in range(n)]
        self.serials = [r[4:8] for r in self.requests]
        self.sent_at = [0.0] * n
        self.waiting = [False] * n
        self.measure_from = measure_from
        self.measure_to = measure_to
        self.latencies = []
        self.completed = 0
        self.timeouts = 0
        self.wrong = 0
        self.late = 0
        self.warmup_timeouts = 0

    def reply(self, c, data, t):
        """A datagram for client c at time t: True if the client should send its next request."""
        if not self.waiting[c]:
            self.late += 1  # answer to a request that already timed out
            return False
        if len(data) < 8 or data[1] != GET_CONTROLLER or data[4:8] != self.serials[c]:
            if t >= self.measure_from:
                self.wrong += 1
            return False
        self.waiting[c] = False
        if t >= self.measure_from:
            self.latencies.append(t - self.sent_at[c])
        return True

    def sweep(self, t):
        """The clients whose request timed out (they send the next one)."""
        expired = []
        cutoff = t - REQUEST_TIMEOUT
        sent_at, waiting = self.sent_at, self.waiting
        for c in range(self.n):
            if waiting[c] and sent_at[c] < cutoff:
                waiting[c] = False
                if t >= self.measure_from:
                    self.timeouts += 1
                else:
                    self.warmup_timeouts += 1
                expired.append(c)
        return expired

    def summary(self, window):
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(p):
            return round(lat[min(n - 1, max(0, math.ceil(p * n) - 1))] * 1000.0, 3) if n else None

        return {
            "completed": n,
            "requests_per_s": round(n / window, 1) if window > 0 else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": round(lat[-1] * 1000.0, 3) if n else None,
            "timeouts": self.timeouts,
            "wrong": self.wrong,
            "late": self.late,
        }


class Monitor:
    """
    Peak RSS of some processes, read every MEMORY_INTERVAL (with an optional
    CSV trace), and their CPU counters and ours when the measured window opens.
    """

    def __init__(self, pids, measure_from, trace=None):
        self.pids = pids  # name -> pid
        self.peak = {name: None for name in pids}
        self.measure_from = measure_from
        self.gone = set()
        self.opened = None  # (time, our CPU, {name: CPU}) at the start of the window
        self.trace = trace
        self.t0 = now()
        self.next = 0.0
        #: the columns of the trace: the tunnel halves (not the emulator)
        self.traced = [name for name in pids if name in ("host", "site")]
        if trace is not None:
            trace.write("t," + ",".join("%s_rss_mb" % name for name in self.traced) + "\n")

    def cpu(self):
        children = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        children["machine"] = machine_cpu()
        return now(), self_cpu(), children

    def poll(self, t):
        if self.opened is None and t >= self.measure_from:
            self.opened = self.cpu()
        if t < self.next:
            return
        self.next = t + MEMORY_INTERVAL
        rows = {}
        for name, pid in self.pids.items():
            rss = _proc_status(pid, "VmRSS:")
            if rss is None and name not in self.gone:
                self.gone.add(name)
                log("%s (pid %d) is gone, %.1fs into the run", name, pid, t - self.t0)
            if rss is not None and (self.peak[name] is None or rss > self.peak[name]):
                self.peak[name] = rss
            rows[name] = "" if rss is None else "%.2f" % rss
        if self.trace is not None:
            self.trace.write("%.2f,%s\n" % (t - self.t0, ",".join(rows[name] for name in self.traced)))
            self.trace.flush()


def _client_sockets(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCALHOST, 0))
        s.setblocking(False)
        socks.append(s)
    return socks


def run_epoll(clients, target, end, monitor):
    """The cheapest engine: one epoll over N non-blocking sockets, level-triggered."""
    socks = _client_sockets(clients.n)
    ep = select.epoll()
    try:
        byfd = {}
        for c, s in enumerate(socks):
            ep.register(s.fileno(), select.EPOLLIN)
            byfd[s.fileno()] = c
        requests, sent_at, waiting = clients.requests, clients.sent_at, clients.waiting
        reply = clients.reply
        for c, s in enumerate(socks):
            sent_at[c] = now()
            waiting[c] = True
            s.sendto(requests[c], target)
        next_sweep = now() + SWEEP_INTERVAL
        poll = ep.poll
        while True:
            t = now()
            if t >= end:
                break
            if t >= next_sweep:
                next_sweep = t + SWEEP_INTERVAL
                for c in clients.sweep(t):
                    sent_at[c] = now()
                    waiting[c] = True
                    socks[c].sendto(requests[c], target)
                monitor.poll(t)
            for fd, _ in poll(max(0.0, min(next_sweep, end) - t)):
                c = byfd[fd]
                s = socks[c]
                try:
                    data = s.recv(2048)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                if reply(c, data, now()):
                    sent_at[c] = now()
                    waiting[c] = True
                    s.sendto(requests[c], target)
    finally:
        ep.close()
        for s in socks:
            s.close()


def run_asyncio(clients, target, end, monitor):
    import asyncio

    class Client(asyncio.DatagramProtocol):
        def __init__(self, c):
            self.c = c
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            c = self.c
            if clients.reply(c, data, now()):
                send(c)

        def error_received(self, exc):
            pass

    transports = []

    def send(c):
        clients.sent_at[c] = now()
        clients.waiting[c] = True
        transports[c].sendto(clients.requests[c], target)

    async def main():
        loop = asyncio.get_running_loop()
        for c in range(clients.n):
            transport, _ = await loop.create_datagram_endpoint(lambda c=c: Client(c), local_addr=(LOCALHOST, 0))
            transports.append(transport)
        for c in range(clients.n):
            send(c)
        while True:
            t = now()
            if t >= end:
                break
            await asyncio.sleep(max(0.0, min(SWEEP_INTERVAL, end - t)))
            t = now()
            for c in clients.sweep(t):
                send(c)
            monitor.poll(t)
        for transport in transports:
            transport.close()

    asyncio.run(main())


def run_twisted(clients, target, end, monitor):
    """One reactor, N DatagramProtocols, one LoopingCall for the sweep (the reactor runs once per process)."""
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol
    from twisted.internet.task import LoopingCall

    class Client(DatagramProtocol):
        noisy = False

        def __init__(self, c):
            self.c = c

        def datagramReceived(self, data, addr):
            if clients.reply(self.c, data, now()):
                send(self.c)

    ports = []

    def send(c):
        clients.sent_at[c] = now()
        clients.waiting[c] = True
        ports[c].write(clients.requests[c], target)

    def tick():
        t = now()
        if t >= end:
            sweeper.stop()
            for port in ports:
                port.stopListening()
            reactor.stop()
            return
        for c in clients.sweep(t):
            send(c)
        monitor.poll(t)

    for c in range(clients.n):
        ports.append(reactor.listenUDP(0, Client(c), interface=LOCALHOST))
    for c in range(clients.n):
        send(c)
    sweeper = LoopingCall(tick)
    sweeper.start(SWEEP_INTERVAL, now=False)
    reactor.run(installSignalHandlers=False)


ENGINES = {"epoll": run_epoll, "asyncio": run_asyncio, "twisted": run_twisted}


def load(engine, n, target, warmup, duration, pids, trace=None):
    """
    Run n clients against target for warmup + duration seconds.

    :param pids: name -> pid of processes whose RSS and CPU are measured.
    :param trace: a text file for the RSS time series, or None.
    :return: the figures of the measured window.
    """
    start = now()
    measure_from = start + warmup
    end = measure_from + duration
    clients = Clients(n, measure_from, end)
    monitor = Monitor(pids, measure_from, trace)
    ENGINES[engine](clients, target, end, monitor)
    t1, cpu1, children1 = monitor.cpu()
    t0, cpu0, children0 = monitor.opened or (measure_from, None, {})
    result = clients.summary(t1 - measure_from)
    elapsed = t1 - t0
    result["loadgen_cpu_pct"] = round(100.0 * (cpu1 - cpu0) / elapsed, 1) if cpu0 is not None else None
    for name in pids:
        a, b = children0.get(name), children1.get(name)
        result[name + "_cpu_pct"] = round(100.0 * (b - a) / elapsed, 1) if a is not None and b is not None else None
        peak = monitor.peak[name]
        result[name + "_peak_rss_mb"] = None if peak is None else round(peak, 1)
    a, b = children0.get("machine"), children1.get("machine")
    if a is not None and b is not None and cpu0 is not None and elapsed > 0:
        # Busy CPU of everything else on the machine: other people's work skews the figures.
        ours = (cpu1 - cpu0) + sum(children1[name] - children0[name] for name in pids
                                   if children0.get(name) is not None and children1.get(name) is not None)
        result["other_cpu_pct"] = round(max(0.0, 100.0 * ((b - a) - ours) / elapsed), 1)
    else:
        result["other_cpu_pct"] = None
    result["warmup_timeouts"] = clients.warmup_timeouts
    return result


# --------------------------------------------------------------------------

def run_tunnel(kind, args, workdir, emulator, direct, template=None, trace_path=None, metrics=False):
    # a --compare tunnel (the Go one) runs over the same transport if it has it (tcp, tls), else over tcp
    transport = args.transport if template is None or args.transport in GO_TRANSPORTS else "tcp"
    tunnel = Tunnel(kind, workdir, emulator[1], args.udp_timeout, template, transport, metrics)
    try:
        tunnel.start()
        pids = {"host": tunnel.host.pid, "site": tunnel.site.pid, "emulator": emulator[0].pid}
        trace = open(trace_path, "w") if trace_path else None
        try:
            log("%s: %d clients, %gs warmup + %gs", kind, args.clients, args.warmup, args.duration)
            figures = load(args.engine, args.clients, (LOCALHOST, tunnel.udp_port), args.warmup, args.duration,
                           pids, trace)
        finally:
            if trace is not None:
                trace.close()
        died = []
        for child in (tunnel.host, tunnel.site):
            if not child.alive():
                died.append(child.name)
                log("%s ended during the run with exit status %s (negative: killed by that signal)%s",
                    child.name, child.proc.returncode, ":\n" + child.output() if child.output() else "")
    finally:
        tunnel.stop()
    line = {
        "clients": args.clients,
        "duration": args.duration,
        "udp_timeout": args.udp_timeout,
        "requests_per_s": figures["requests_per_s"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "timeouts": figures["timeouts"],
        "wrong": figures["wrong"],
        "host_peak_rss_mb": figures["host_peak_rss_mb"],
        "site_peak_rss_mb": figures["site_peak_rss_mb"],
        "direct_p50_ms": direct["p50_ms"],
        "direct_requests_per_s": direct["requests_per_s"],
        "tunnel": kind,
        "transport": transport,
        "metrics": metrics,
        # extras
        "completed": figures["completed"],
        "p999_ms": figures["p999_ms"],
        "max_ms": figures["max_ms"],
        "late": figures["late"],
        "warmup_timeouts": figures["warmup_timeouts"],
        "direct_p99_ms": direct["p99_ms"],
        "loadgen_cpu_pct": figures["loadgen_cpu_pct"],
        "host_cpu_pct": figures["host_cpu_pct"],
        "site_cpu_pct": figures["site_cpu_pct"],
        "emulator_cpu_pct": figures["emulator_cpu_pct"],
        "direct_loadgen_cpu_pct": direct["loadgen_cpu_pct"],
        "direct_emulator_cpu_pct": direct["emulator_cpu_pct"],
        "other_cpu_pct": figures["other_cpu_pct"],
        "engine": args.engine,
        "reactor": REACTOR,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
    }
    if died:
        line["died"] = died
    print(json.dumps(line), flush=True)
    return not died


def compare_trace_path(path):
    if not path:
        return None
    stem, ext = os.path.splitext(path)
    return stem + "-compare" + (ext or ".csv")


def positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return int(value) if value == int(value) else value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1, help="concurrent closed-loop clients (default 1)")
    parser.add_argument("--duration", type=positive, default=10, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before (default 2)")
    parser.add_argument("--udp-timeout", default="5s", help="the tunnels' --udp-timeout (default 5s)")
    parser.add_argument("--trace-memory", metavar="FILE", help="CSV of t,host_rss_mb,site_rss_mb every 0.5 s "
                        "(the --compare run writes FILE-compare)")
    parser.add_argument("--compare", metavar="TEMPLATE", help="also run another tunnel: a command with {in}, {out}, "
                        "{udp_timeout} (and {lockfile}) filled in for each half, and {link_args} replaced by the "
                        "transport's own flags (the TLS certificates); over tcp or tls as --transport says, "
                        "else over tcp")
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="tcp",
                        help="what joins the pair's halves (default tcp)")
    parser.add_argument("--metrics", action="store_true",
                        help="run the tunnel twice, metrics off then on (each half with --metrics on a free port of "
                             "its own): two JSON lines to compare, from the same minute")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="epoll",
                        help="client I/O: epoll (default, the cheapest), asyncio or twisted (twisted only with "
                             "--direct-only: a reactor runs once per process)")
    parser.add_argument("--reactor", choices=("default", "asyncio", "uvloop"), default="default",
                        help="the halves' Twisted reactor: the tunnel's default (epoll; asyncio for a half with a gRPC end), Twisted's asyncio reactor, "
                             "or that on uvloop's loop (pip install uvloop)")
    parser.add_argument("--direct-only", action="store_true",
                        help="only measure the clients straight at the emulator (to compare engines)")
    args = parser.parse_args(argv)
    global REACTOR
    REACTOR = args.reactor
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if args.engine == "twisted" and not args.direct_only:
        parser.error("--engine twisted runs one load per process: use it with --direct-only")

    # Everything stops by itself, even if something hangs: a hard deadline for the whole run.
    runs = 2 + (1 if args.compare else 0) + (1 if args.metrics else 0)
    budget = (min(args.duration, DIRECT_MAX) + min(args.warmup, 1.0)
              + (runs - 1) * (args.duration + args.warmup + READY_TIMEOUT + 4 * STOP_GRACE) + 60)

    def overdue(signum, frame):
        raise TimeoutError("the load generator ran past its %ds deadline" % budget)

    signal.signal(signal.SIGALRM, overdue)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    signal.alarm(int(budget))

    status = 0
    workdir = tempfile.mkdtemp(prefix="uhppoted-bench-")
    emulator = None
    try:
        emulator_child, address = start_emulator(workdir)
        emulator = (emulator_child, address)
        log("emulator on %s:%d", *address)
        direct_duration = min(args.duration, DIRECT_MAX)
        direct_warmup = min(args.warmup, 1.0)
        direct = load(args.engine, args.clients, address, direct_warmup, direct_duration,
                      {"emulator": emulator_child.pid})
        log("direct: %s", json.dumps(direct))
        if args.direct_only:
            print(json.dumps(dict(clients=args.clients, duration=direct_duration, tunnel="direct",
                                  engine=args.engine, cpus=os.cpu_count(), **direct)), flush=True)
            return 0
        try:
            if not run_tunnel("python", args, workdir, emulator, direct, trace_path=args.trace_memory):
                status = 1
            if args.metrics and not run_tunnel("python", args, workdir, emulator, direct, metrics=True):
                status = 1
        except NotReady as e:
            log("%s", e)
            status = 1
        if args.compare:
            try:
                if not run_tunnel("compare", args, workdir, emulator, direct, template=args.compare,
                                  trace_path=compare_trace_path(args.trace_memory)):
                    status = 1
            except NotReady as e:
                log("%s", e)
                status = 1
    except NotReady as e:
        log("%s", e)
        status = 1
    finally:
        signal.alarm(0)
        if emulator is not None:
            emulator[0].stop()
        for name in os.listdir(workdir):
            try:
                os.unlink(os.path.join(workdir, name))
            except OSError:
                pass
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    return status


if __name__ == "__main__":
    sys.exit(main())
