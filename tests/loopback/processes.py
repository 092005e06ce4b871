# -*- test-case-name: tests.loopback.test_integration -*-
"""
Real processes under trial's reactor, for the end-to-end tests.

L{spawn} starts a child with the tree under test on its path and kills it
in the test's cleanup; the L{LineProtocol} it returns collects the child's
output line by line, and L{LineProtocol.waitFor} waits, with a deadline,
for a line that matches. Nothing here sleeps: every wait is on a line, an
exit or a reply, and succeeds as soon as it holds.

L{Client} runs the synchronous C{uhppoted} client in a thread against a
host half's UDP port.
"""

import os
import re
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThread
from uhppoted.uhppote import Uhppote

import uhppoted_tunnel
from uhppoted_tunnel.testing import NOT_YET, Conditions, WaitTimeout

#: The directory holding the C{uhppoted_tunnel} package under test.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(uhppoted_tunnel.__file__)))

#: How long any one wait may take before the test fails.
DEADLINE = 30.0

#: How many lines of output a timeout message shows.
RECENT = 25

LOOPBACK = "127.0.0.1"

# The tunnel's own console log (Go layout) and twistd's layout of the same
# events: "INFO   TCP    listening on ..." or
# "[uhppoted_tunnel.link.ends.ServerEnd#info] listening on ..." (and
# "[uhppoted_tunnel.link.factory.FrameFactory#info] connected to ...").
_TAG = {
    "TCP": r"(?:\bTCP\s+|\.link\.(?:ends|factory)\.\w+#\w+\]\s+)",
    "UDP": r"(?:\bUDP\s+|\.ends\.udp\.\w+#\w+\]\s+)",
}


def listening_line(kind, port=None):
    """
    :param kind: C{"TCP"} or C{"UDP"}.
    :param port: the port expected, or C{None} for any (group 1).
    :return: a regex for the line an end logs once it listens.
    """
    return _TAG[kind] + r"listening on 127\.0\.0\.1:(" + (r"\d+" if port is None else str(port)) + r")\s*$"


def connected_line(port=None):
    """
    :param port: the peer's port, or C{None} for any (group 1).
    :return: a regex for the line a stream end logs on connecting.
    """
    return _TAG["TCP"] + r"connected to 127\.0\.0\.1:(" + (r"\d+" if port is None else str(port)) + r")\s*$"


def dial_failed_line(port):
    """
    :return: a regex for a client end's warning that a dial failed and it
        will dial again.
    """
    return r"WARN\s+TCP\s+could not connect to 127\.0\.0\.1:" + str(port) + r"\b.*retrying in"


def redial_line(port):
    """
    :return: a regex for a client end's line saying it will dial again,
        after a failed dial or a lost connection.
    """
    address = r"127\.0\.0\.1:" + str(port)
    return r"TCP\s+(?:could not connect to " + address + r"\b.*retrying in|reconnecting to " + address + r" in)"


class LineProtocol(ProcessProtocol):
    """
    Collects a child's stdout and stderr as lines and lets a test wait for
    a line that matches, or for the exit.

    :ivar name: names the child in messages.
    :ivar lines: C{(fd, text)} in the order received, stdout (1) and
        stderr (2) interleaved.
    :ivar times: when each line arrived, in seconds after the start.
    :ivar exitCode: the exit code once ended, C{None} while running or if
        a signal killed the child.
    :ivar signal: the signal that killed the child, if one did.
    """

    def __init__(self, name, clock=reactor):
        self.name = name
        self.clock = clock
        self.lines = []
        self.started = clock.seconds()
        self.times = []
        self.exitCode = None
        self.signal = None
        self.running = True
        self._partial = {}
        self._conditions = Conditions(clock)
        self._ended = []

    # ProcessProtocol

    def childDataReceived(self, childFD, data):
        text = self._partial.pop(childFD, b"") + data
        *whole, rest = text.split(b"\n")
        if rest:
            self._partial[childFD] = rest
        for line in whole:
            self._line(childFD, line)

    def processEnded(self, reason):
        for fd, rest in sorted(self._partial.items()):
            self._line(fd, rest)
        self._partial.clear()
        self.running = False
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        self._conditions.check()
        self._conditions.fail(lambda what: "{} ended (exit code {}, signal {}) with {}".format(
            self.name, self.exitCode, self.signal, what))
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(self.exitCode)

    def _line(self, fd, raw):
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.lines.append((fd, text))
        self.times.append(self.clock.seconds() - self.started)
        self._conditions.check()

    # for tests

    def mark(self):
        """
        :return: a position in the output, for L{waitFor}'s C{since}.
        """
        return len(self.lines)

    def waitFor(self, pattern, timeout=DEADLINE, since=0):
        """
        Wait for a line (stdout or stderr) matching C{pattern}.

        :param pattern: a regex, searched in each line.
        :param timeout: seconds before the Deferred fails with
            L{WaitTimeout}, showing the recent output.
        :param since: only lines after this L{mark} count; by default every
            line, including those already received.
        :return: a Deferred firing with the first C{re.Match}.
        """
        return self.waitForLines(pattern, 1, timeout, since).addCallback(lambda matches: matches[0])

    def waitForLines(self, pattern, count, timeout=DEADLINE, since=0):
        """
        Wait until C{count} lines match C{pattern}.

        :param since: only lines after this L{mark} count.
        :return: a Deferred firing with the matches, in order, or failing
            with L{WaitTimeout} (saying how many matched) after C{timeout}
            seconds or when the child ends first.
        """
        regex = re.compile(pattern)
        matches = []
        checked = [since]

        def test():
            for _, text in self.lines[checked[0]:]:
                match = regex.search(text)
                if match is not None:
                    matches.append(match)
            checked[0] = len(self.lines)
            if len(matches) >= count:
                return matches[:count]
            return NOT_YET

        def describe():
            if count == 1:
                return "no line matching {!r}\n{}".format(pattern, self.recent())
            return "{} of {} lines matching {!r}\n{}".format(len(matches), count, pattern, self.recent())

        found = test()
        if found is not NOT_YET:
            return succeed(found)
        if not self.running:
            return fail(WaitTimeout("{} has ended (exit code {}) with {}".format(self.name, self.exitCode,
                                                                               describe())))
        return self._conditions.wait(test, timeout, lambda: "{} from {} within {}s".format(
            describe(), self.name, timeout))

    @property
    def ended(self):
        """
        A new Deferred firing with the exit code when the child has ended
        (C{None} if a signal killed it); each access gives its own, so that
        callers do not share a callback chain.
        """
        if not self.running:
            return succeed(self.exitCode)
        d = Deferred()
        self._ended.append(d)
        return d

    def exited(self, timeout=DEADLINE):
        """
        Wait for the child to end.

        :return: a Deferred firing with the exit code, or failing with
            L{WaitTimeout} after C{timeout} seconds.
        """
        return self._conditions.wait(lambda: NOT_YET if self.running else self.exitCode, timeout,
                                     lambda: "{} did not exit within {}s\n{}".format(self.name, timeout,
                                                                                    self.recent()))

    def send_signal(self, name):
        """
        Send a signal (e.g. C{"TERM"}, C{"INT"}) unless the child has ended.
        """
        if self.running:
            try:
                self.transport.signalProcess(name)
            except ProcessExitedAlready:
                pass

    @property
    def pid(self):
        return self.transport.pid

    def output(self, fd=None):
        """
        :param fd: 1 or 2 for stdout or stderr alone; both when C{None}.
        :return: the lines received so far, as one text.
        """
        return "\n".join(text for where, text in self.lines if fd in (None, where))

    def recent(self, count=RECENT):
        """
        :return: the last lines received, for failure messages.
        """
        shown = ["    {:6.2f} {} {}".format(when, "!" if fd == 2 else "|", text)
                 for when, (fd, text) in zip(self.times[-count:], self.lines[-count:])]
        return "--- last output of {} ---\n{}".format(self.name, "\n".join(shown) or "    (none)")


def child_environment(extra=None):
    """
    The environment of a child: this one, with the tree under test first
    on C{PYTHONPATH} and unbuffered output.
    """
    env = dict(os.environ)
    path = [ROOT] + [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != ROOT]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def workdir(testcase):
    """
    :return: the test's temporary directory, created on first use.
    """
    path = getattr(testcase, "_processes_workdir", None)
    if path is None:
        path = os.path.abspath(testcase.mktemp())
        os.makedirs(path)
        testcase._processes_workdir = path
    return path


def spawn(testcase, args, name, env=None):
    """
    Start a child process; the test's cleanup kills it (SIGKILL) if it is
    still running and waits for it to end.

    :param testcase: the running L{twisted.trial.unittest.TestCase}.
    :param args: the command line, C{args[0]} an executable path.
    :param name: names the child in messages.
    :param env: variables to add to the environment.
    :return: the L{LineProtocol}.
    """
    protocol = LineProtocol(name)
    reactor.spawnProcess(protocol, args[0], list(args), env=child_environment(env), path=workdir(testcase),
                         childFDs={0: "w", 1: "r", 2: "r"})

    def kill():
        if not protocol.running:
            return None
        protocol.send_signal("KILL")
        return protocol.ended

    testcase.addCleanup(kill)
    return protocol


def _script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else None


def tunnel_command():
    """
    :return: how to run C{uhppoted-tunnel}: the script next to the Python
        running the tests, else C{python -m uhppoted_tunnel.app.cli}.
    """
    script = _script("uhppoted-tunnel")
    return [script] if script else [sys.executable, "-m", "uhppoted_tunnel.app.cli"]


def twistd_command():
    """
    :return: how to run C{twistd} (C{python -m twisted} runs C{twist}).
    """
    script = _script("twistd")
    return [script] if script else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def empty_config(testcase):
    """
    An empty TOML file, passed as C{--config} so that a
    C{/etc/uhppoted/uhppoted-tunnel.toml} on the machine cannot change the
    test.
    """
    path = os.path.join(workdir(testcase), "empty.toml")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("# no settings\n")
    return path


def lockfile(testcase, name):
    """
    :return: the path of the lockfile for the half called C{name}.
    """
    return os.path.join(workdir(testcase), name + ".pid")


def run_tunnel(testcase, name, *args, command=None, config=True, env=None):
    """
    Start a tunnel half with its lockfile in the test's directory and a
    high rate limit.

    :param args: the tunnel's own flags (C{--in}, C{--out}, ...), after
        these defaults, so that a test can set its own rate limit.
    :param command: the command to run, by default L{tunnel_command}.
    :param config: pass an empty C{--config} file first.
    :param env: variables to add to the child's environment.
    :return: the L{LineProtocol}.
    """
    flags = ["--lockfile", lockfile(testcase, name), "--rate-limit", "1000"]
    if config:
        flags += ["--config", empty_config(testcase)]
    return spawn(testcase, (command or tunnel_command()) + flags + list(args), name, env)


@inlineCallbacks
def start_emulator(testcase, *serials):
    """
    Start the controller emulator on a free loopback port.

    :return: a Deferred firing with C{(protocol, port)}.
    """
    args = [sys.executable, "-m", "uhppoted_tunnel.emulator", "--bind", LOOPBACK + ":0"]
    for serial in serials:
        args += ["--controller", str(serial)]
    emulator = spawn(testcase, args, "emulator")
    match = yield emulator.waitFor(r"^emulator listening on 127\.0\.0\.1:(\d+)$")
    return emulator, int(match.group(1))


@inlineCallbacks
def start_host(testcase, out, *flags, name="host", command=None, listen_port=0):
    """
    Start a host half: C{udp/listen} on loopback to C{out}.

    :param out: the out connector, e.g. C{tcp/server:127.0.0.1:0}.
    :param flags: more flags, after C{--in} and C{--out}.
    :return: a Deferred firing with C{(protocol, udp_port)} once it listens.
    """
    host = run_tunnel(testcase, name, "--in", "udp/listen:127.0.0.1:{}".format(listen_port), "--out", out, *flags,
                      command=command)
    match = yield host.waitFor(listening_line("UDP"))
    return host, int(match.group(1))


def emulator_sent_line(count=None):
    """
    :param count: the number expected, or C{None} for any (group 1).
    :return: a regex for the line the emulator prints when it has pushed
        all its events.
    """
    return r"^emulator sent (" + (r"\d+" if count is None else str(count)) + r") events$"


@inlineCallbacks
def start_event_emulator(testcase, listener_port, count, interval="10ms", serials=(), start=None, name="emulator"):
    """
    Start the controller emulator on a free loopback port, pushing events
    to a listener on loopback (see L{emulator_sent_line}).

    :param listener_port: the UDP port events go to.
    :param count: how many events, the controllers taking turns.
    :param interval: the time between events, e.g. C{"10ms"}.
    :param serials: the controllers (default: the emulator's two).
    :param start: the index of each controller's first event (default 1).
    :return: a Deferred firing with C{(protocol, port)} once it listens.
    """
    args = [sys.executable, "-m", "uhppoted_tunnel.emulator", "--bind", LOOPBACK + ":0",
            "--events", str(count), "--listener", "{}:{}".format(LOOPBACK, listener_port), "--interval", interval]
    for serial in serials:
        args += ["--controller", str(serial)]
    if start is not None:
        args += ["--event-start", str(start)]
    emulator = spawn(testcase, args, name)
    match = yield emulator.waitFor(r"^emulator listening on 127\.0\.0\.1:(\d+)$")
    return emulator, int(match.group(1))


def wait_for_lines(protocol, pattern, count, timeout=DEADLINE, since=0):
    """
    Wait until C{count} lines of a child's output match C{pattern}: see
    L{LineProtocol.waitForLines}.
    """
    return protocol.waitForLines(pattern, count, timeout, since)


def start_site(testcase, inbound, emulator_port, *flags, name="site"):
    """
    Start a site half: C{inbound} to C{udp/broadcast} at the emulator, with
    a 1 s UDP timeout.

    :param flags: more flags, after those.
    :return: the L{LineProtocol}.
    """
    return run_tunnel(testcase, name, "--in", inbound, "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port),
                      "--udp-timeout", "1s", *flags)


def free_port():
    """
    A loopback TCP port that nothing listens on (bound, read and closed).
    """
    return free_ports(1)[0]


def free_ports(count):
    """
    C{count} different loopback TCP ports that nothing listens on: all
    bound before any is closed, so that none is handed out twice (one
    at a time, the kernel may give the port just closed again).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Client:
    """
    The synchronous C{uhppoted} client, run in a thread, sending to a host
    half's UDP port on loopback.

    A single-reply call that gets no reply fails (the client raises
    C{socket.timeout}); L{retry} calls again until a deadline.
    """

    def __init__(self, port):
        """
        :param port: the host half's C{udp/listen} port.
        """
        self.address = "{}:{}".format(LOOPBACK, port)
        self.uhppote = Uhppote(bind=LOOPBACK, broadcast=self.address, listen=LOOPBACK + ":0")

    def call(self, method, *args, **kwargs):
        """
        :return: a Deferred firing with C{Uhppote.method(*args, **kwargs)}.
        """
        return deferToThread(getattr(self.uhppote, method), *args, **kwargs)

    def unicast(self, method, serial, *args, timeout=5.0):
        """
        Send a request to one controller, addressed to the host half.
        """
        return self.call(method, (serial, self.address), *args, timeout=timeout)

    def get_all_controllers(self, timeout=3.0):
        return self.call("get_all_controllers", timeout=timeout)

    def get_controller(self, serial, timeout=5.0):
        return self.unicast("get_controller", serial, timeout=timeout)

    def get_time(self, serial, timeout=5.0):
        return self.unicast("get_time", serial, timeout=timeout)

    def set_time(self, serial, when, timeout=5.0):
        return self.unicast("set_time", serial, when, timeout=timeout)

    def set_ip(self, serial, address, netmask, gateway, timeout=5.0):
        return self.unicast("set_ip", serial, address, netmask, gateway, timeout=timeout)

    def put_card(self, serial, card, start, end, doors, pin, timeout=5.0):
        return self.unicast("put_card", serial, card, start, end, *doors, pin, timeout=timeout)

    def get_card(self, serial, card, timeout=5.0):
        return self.unicast("get_card", serial, card, timeout=timeout)


@inlineCallbacks
def retry(call, accept=bool, deadline=DEADLINE, clock=reactor):
    """
    Call C{call()} until its result is accepted, with no pause between
    tries but the call's own timeout.

    :param call: returns a Deferred, e.g. C{lambda: client.get_controller(n)}.
    :param accept: C{result -> bool}.
    :param deadline: seconds after which the last failure (or a
        L{WaitTimeout}) is raised.
    :return: a Deferred firing with the first accepted result.
    """
    end = clock.seconds() + deadline
    tries = 0
    while True:
        tries += 1
        try:
            result = yield call()
        except Exception as e:
            if clock.seconds() >= end:
                raise WaitTimeout("no success in {} tries over {}s; last error: {!r}".format(tries, deadline, e))
            continue
        if accept(result):
            return result
        if clock.seconds() >= end:
            raise WaitTimeout("no accepted result in {} tries over {}s; last: {!r}".format(tries, deadline, result))


def stop(protocol, name="TERM", timeout=DEADLINE):
    """
    Signal a child and wait for it to exit.

    :return: a Deferred firing with the exit code.
    """
    protocol.send_signal(name)
    return protocol.exited(timeout)


__all__ = [
    "Client", "LineProtocol", "WaitTimeout", "connected_line", "free_port", "listening_line", "retry",
    "dial_failed_line", "redial_line", "run_tunnel", "spawn", "start_emulator", "start_host", "start_site", "stop",
    "tunnel_command", "twistd_command", "emulator_sent_line", "start_event_emulator", "wait_for_lines",
]
