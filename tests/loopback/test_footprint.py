# -*- test-case-name: tests.loopback.test_footprint -*-
"""
A tunnel pays only for what it uses: a plain C{udp/listen -> tcp/server}
half, listening, has loaded no other transport's library (pyzmq, grpc,
protobuf, autobahn) and none of the parts it does not use (the web
server, Prometheus, the status page), neither as Python modules nor as
shared libraries mapped into the process. The figures against a bare
reactor are C{bench/footprint.py}'s.
"""

import os
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import empty_config, listening_line, lockfile, spawn, stop, workdir

#: Runs the console script, and as the reactor stops writes the names of
#: the modules loaded to the file named by C{$FOOTPRINT_MODULES}.
RUN = """\
import os, sys
from twisted.internet import reactor
from uhppoted_tunnel.app.cli import main
def dump():
    with open(os.environ["FOOTPRINT_MODULES"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
reactor.addSystemEventTrigger("before", "shutdown", dump)
sys.exit(main(sys.argv[1:]))
"""

#: Module name prefixes a plain udp -> tcp half must not load.
UNUSED = ("zmq", "grpc", "google.protobuf", "h2", "hpack", "hyperframe", "autobahn", "txaio", "twisted.web",
          "prometheus_client", "treq",
          "uhppoted_tunnel.transports.zmq.maker", "uhppoted_tunnel.transports.ws.maker",
          "uhppoted_tunnel.transports.nats.maker", "nats", "twisted.conch", "importlib.metadata", "difflib",
          "uhppoted_tunnel.transports.grpc.maker", "uhppoted_tunnel.transports.xmpp.maker",
          "uhppoted_tunnel.observe.status", "uhppoted_tunnel.observe.monitor", "uhppoted_tunnel.ends.http",
          "twisted.trial", "automat")

#: Shared libraries (in C{/proc/PID/maps}) of those transports.
UNUSED_LIBRARIES = ("libzmq", "zmq/backend", "cygrpc", "grpc", "protobuf", "_upb", "autobahn")


def library_name(path):
    """
    What names a mapped file's library: its path under C{site-packages},
    or its file name elsewhere, so that the folder a user cloned into (say
    C{~/grpc-work}) is never mistaken for a library.
    """
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    return os.path.basename(path)


class PlainHalfTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_onlyWhatItUses(self):
        """
        A listening C{udp/listen -> tcp/server} half maps no library of
        zmq, grpc, protobuf or autobahn, and has imported none of their
        modules, nor the web server, Prometheus or the status page.
        """
        modules = os.path.join(workdir(self), "modules.txt")
        child = spawn(self, [sys.executable, "-c", RUN, "--config", empty_config(self),
                             "--lockfile", lockfile(self, "half"),
                             "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0"],
                      "half", env={"FOOTPRINT_MODULES": modules})
        yield child.waitFor(listening_line("TCP"))
        yield child.waitFor(listening_line("UDP"))
        with open("/proc/{}/maps".format(child.pid)) as f:
            mapped = {line.split()[-1] for line in f if "/" in line}
        self.assertEqual([path for path in sorted(mapped) if any(name in library_name(path) for name in UNUSED_LIBRARIES)], [])
        code = yield stop(child)
        self.assertEqual(code, 0, child.recent())
        with open(modules) as f:
            loaded = f.read().split()
        self.assertIn("uhppoted_tunnel.link.ends", loaded)
        packages = tuple(name + "." for name in UNUSED)
        self.assertEqual([name for name in loaded if name in UNUSED or name.startswith(packages)], [])
