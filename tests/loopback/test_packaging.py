# -*- test-case-name: tests.loopback.test_packaging -*-
"""
The package as a user gets it: the wheel and the sdist carry the LICENSE,
the sample TOML file, the C{.tac} file, the systemd units and the man page;
the README renders on a package index (C{twine check}); the documentation
builds with warnings as errors; and the core install, in a fresh
virtualenv without extras, runs a tcp pair, refuses a zmq connector with
one line naming the extra, and stays small.

The builds need C{build}, C{twine} and Sphinx (the C{test} extra): without
them these tests are skipped, naming the extra, except under CI
(C{CI=true}), where they fail. The core install takes its packages from
pip's cache or the index, as any install does.
"""

import glob
import os
import re
import subprocess
import sys
import tarfile
import zipfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from tests.loopback.processes import LOOPBACK, ROOT, LineProtocol, free_port, retry, stop
from tests.tools import under_ci

#: the shipped files, as paths inside the package
DATA = ["uhppoted_tunnel/data/uhppoted-tunnel.toml", "uhppoted_tunnel/data/uhtunnel.tac",
        "uhppoted_tunnel/data/uhppoted-tunnel.1", "uhppoted_tunnel/data/systemd/uhppoted-tunnel@.service",
        "uhppoted_tunnel/data/systemd/uhppoted-tunnel-host.service",
        "uhppoted_tunnel/data/systemd/uhppoted-tunnel-host.socket"]

#: the most a core install may add to a fresh virtualenv's site-packages
#: (which holds pip and setuptools already), in bytes
CORE_LIMIT = 75 * 1000 * 1000

#: a get-controller request for every controller
GET_CONTROLLER = bytes([0x17, 0x94]) + bytes(62)


def require_module(name):
    """
    :raise SkipTest: naming the extra, when C{name} is missing outside CI.
    """
    try:
        __import__(name)
    except ImportError:
        message = "{} is not installed (pip install '.[test]')".format(name)
        if under_ci():
            raise AssertionError(message + ": the test extra should have installed it") from None
        raise SkipTest(message) from None


def run(*args, **kwargs):
    """
    Run a command to its end; its output goes into the failure message.
    """
    done = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError("{} exited {}:\n{}{}".format(" ".join(args), done.returncode, done.stdout, done.stderr))
    return done.stdout


def clean_environment(**extra):
    """
    This environment without the tree under test on C{PYTHONPATH}, so that
    a child imports what its own virtualenv installed.
    """
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def folder_size(path):
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path)
               for name in names if not os.path.islink(os.path.join(folder, name)))


class DistributionTests(TestCase):
    """
    The sdist and the wheel, built once from this tree.
    """

    timeout = 600
    dist = None

    @classmethod
    def build(cls, testcase):
        if cls.dist is None:
            require_module("build")
            folder = os.path.abspath(testcase.mktemp())
            run(sys.executable, "-m", "build", "--no-isolation", "--outdir", folder, ROOT)
            cls.dist = folder
        return cls.dist

    def files(self, pattern):
        found = glob.glob(os.path.join(self.build(self), pattern))
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_wheel(self):
        """
        The wheel holds the LICENSE, the shipped files as package data and
        the man page where C{man} finds it under the install's prefix.
        """
        with zipfile.ZipFile(self.files("*.whl")) as wheel:
            names = wheel.namelist()
            metadata = wheel.read([n for n in names if n.endswith(".dist-info/METADATA")][0]).decode()
        for path in DATA:
            self.assertIn(path, names)
        self.assertTrue([n for n in names if re.match(r"[^/]+\.dist-info/licenses/LICENSE$", n)], names)
        self.assertTrue([n for n in names if n.endswith(".data/data/share/man/man1/uhppoted-tunnel.1")], names)
        for extra in ("ws", "zmq", "grpc", "all", "docs", "test"):
            self.assertIn("Provides-Extra: " + extra, metadata)
        requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
        core = [line for line in requires if "extra ==" not in line]
        self.assertFalse([line for line in core if re.search(r"pyzmq|autobahn|grpcio|protobuf|\bh2\b", line)], core)

    def test_sdist(self):
        """
        The sdist holds the LICENSE, the shipped files and the pages the man
        page is built from.
        """
        with tarfile.open(self.files("*.tar.gz")) as sdist:
            names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
        for path in DATA + ["LICENSE", "README.rst", "docs/conf.py", "docs/man.rst", "docs/_ext/optionsref.py"]:
            self.assertIn(path, names)

    def test_twineCheck(self):
        """
        C{twine check --strict} passes: the README renders on a package
        index.
        """
        require_module("twine")
        dist = self.build(self)
        out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(glob.glob(os.path.join(dist, "*"))))
        self.assertEqual(out.count("PASSED"), 2, out)


class DocsTests(TestCase):
    timeout = 300

    def test_site(self):
        """
        The Sphinx site builds with warnings as errors, and its option
        reference lists the options.
        """
        require_module("sphinx")
        out = os.path.abspath(self.mktemp())
        run(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", os.path.join(ROOT, "docs"), out)
        with open(os.path.join(out, "reference", "options.html"), encoding="utf-8") as f:
            page = f.read()
        for flag in ("--udp-timeout", "--rate-limit-burst", "--zmq-server-key", "--ws-ping", "--xmpp-peer"):
            self.assertIn(flag, page)


class CoreInstallTests(TestCase):
    """
    The core install in a fresh virtualenv, without extras.
    """

    timeout = 900

    def spawn(self, args, name):
        from twisted.internet import reactor

        protocol = LineProtocol(name)
        reactor.spawnProcess(protocol, args[0], list(args), env=clean_environment(), path=self.folder,
                             childFDs={0: "w", 1: "r", 2: "r"})

        def kill():
            if protocol.running:
                protocol.send_signal("KILL")
                return protocol.ended

        self.addCleanup(kill)
        return protocol

    @inlineCallbacks
    def test_core(self):
        """
        Installed without extras, the wheel brings none of pyzmq, autobahn,
        h2, grpcio or protobuf; a tcp pair relays a request to the emulator (run
        as C{uhppoted-tunnel emulator}); a C{zmq/}, C{ws/} or C{grpcs/}
        connector is one line naming its C{pip install
        'uhppoted-tunnel[EXTRA]'}, exit 2, for C{run} and C{check} alike;
        and the install adds less than 75 MB to site-packages.
        """
        wheel = DistributionTests.build(self)
        wheel = glob.glob(os.path.join(wheel, "*.whl"))[0]
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        venv = os.path.join(self.folder, "venv")
        yield deferToThread(run, sys.executable, "-m", "venv", venv)
        python, command = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "uhppoted-tunnel")
        site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
        empty = folder_size(site)
        yield deferToThread(run, python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel,
                            env=clean_environment())
        missing = run(python, "-c", "import importlib.util as u; print(' '.join(m for m in "
                      "('zmq', 'autobahn', 'h2', 'grpc', 'google.protobuf') if u.find_spec(m.split('.')[0]) is None "
                      "or (m == 'google.protobuf' and u.find_spec('google') is None)))", env=clean_environment())
        self.assertEqual(missing.split(), ["zmq", "autobahn", "h2", "grpc", "google.protobuf"])

        size = folder_size(site)
        log.msg("core install: site-packages {:.1f} MB, of which the fresh virtualenv's own (pip, setuptools) "
                "{:.1f} MB and the install {:.1f} MB".format(size / 1e6, empty / 1e6, (size - empty) / 1e6))
        self.assertLess(size - empty, CORE_LIMIT, "the core install added {:.1f} MB to site-packages".format(
            (size - empty) / 1e6))

        for args, out, extra in [([command], "zmq/server:127.0.0.1:0", "zmq"),
                                 ([command, "check"], "zmq/client:127.0.0.1:1", "zmq"),
                                 ([command], "ws/server:127.0.0.1:0", "ws"),
                                 ([command], "grpcs/server:127.0.0.1:0", "grpc")]:
            done = subprocess.run(args + ["--in", "udp/listen:127.0.0.1:0", "--out", out],
                                  capture_output=True, text=True, env=clean_environment(), cwd=self.folder)
            self.assertEqual(done.returncode, 2, done.stderr)
            lines = [line for line in done.stderr.splitlines() if "Warning" not in line and "theSystemPath" not in line]
            self.assertEqual(len(lines), 1, done.stderr)
            self.assertIn("pip install 'uhppoted-tunnel[{}]'".format(extra), lines[0])
            self.assertNotIn("Traceback", done.stderr)

        emulator = self.spawn([command, "emulator", "--bind", LOOPBACK + ":0"], "emulator")
        match = yield emulator.waitFor(r"^emulator listening on 127\.0\.0\.1:(\d+)$")
        link, udp = free_port(), free_port()
        empty = os.path.join(self.folder, "empty.toml")
        with open(empty, "w") as f:
            f.write("# no settings\n")
        host = self.spawn([command, "--lockfile", os.path.join(self.folder, "host.pid"), "--config", empty,
                           "--in", "udp/listen:127.0.0.1:{}".format(udp),
                           "--out", "tcp/server:127.0.0.1:{}".format(link)], "host")
        yield host.waitFor(r"listening on 127\.0\.0\.1:{}".format(link))
        site = self.spawn([command, "--lockfile", os.path.join(self.folder, "site.pid"), "--config", empty,
                           "--in", "tcp/client:127.0.0.1:{}".format(link),
                           "--out", "udp/broadcast:127.0.0.1:{}".format(match.group(1)), "--udp-timeout", "1s"],
                          "site")
        yield site.waitFor(r"connected to 127\.0\.0\.1:{}".format(link))
        replies = yield retry(lambda: deferToThread(self.ask, udp), accept=lambda replies: len(replies) == 2)
        self.assertEqual(sorted(reply[1] for reply in replies), [0x94, 0x94])
        for child in (site, host, emulator):
            code = yield stop(child)
            self.assertIn(code, (0, None))

    def ask(self, port):
        """
        Broadcast a get-controller to the host half and collect the replies
        for a second.
        """
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((LOOPBACK, 0))
            s.settimeout(1.0)
            s.sendto(GET_CONTROLLER, (LOOPBACK, port))
            replies = []
            while True:
                try:
                    replies.append(s.recv(64))
                except socket.timeout:
                    return replies
        finally:
            s.close()
