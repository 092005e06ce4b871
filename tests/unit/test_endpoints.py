# -*- test-case-name: tests.unit.test_endpoints -*-
"""
Tests for L{uhppoted_tunnel.transports.endpoints}: the sockets systemd
passes, named the way units are written.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.transports.endpoints import SystemdServerEndpoint, server_endpoint, systemd_socket
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.testing import FakeReactor


def spec(text):
    prefix, _, address = text.partition(":")
    return ConnectorSpec(text, prefix + ":", None, address)


class SystemdSocketTests(SynchronousTestCase):
    def environ(self, count=2, names="host.socket:events"):
        return {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": str(count), "LISTEN_FDNAMES": names}

    def test_forms(self):
        """
        C{systemd} is the first socket passed, C{systemd:N} the Nth from 0,
        C{systemd:NAME} the one its unit's C{FileDescriptorName=} names.
        """
        environ = self.environ()
        self.assertEqual(systemd_socket(spec("tcp/server:systemd"), environ), 3)
        self.assertEqual(systemd_socket(spec("tcp/server:systemd:1"), environ), 4)
        self.assertEqual(systemd_socket(spec("udp/listen:systemd:events"), environ), 4)
        http = ConnectorSpec("http/systemd:host.socket", "http/", None, "systemd:host.socket")
        self.assertEqual(systemd_socket(http, environ), 3)

    def test_withoutNames(self):
        """
        Sockets passed without C{LISTEN_FDNAMES} (C{systemd-socket-activate}
        without C{--fdname}) are used by index, as C{sd_listen_fds(3)}
        does; only C{systemd:NAME} needs names, and says how to give them.
        """
        environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
        self.assertEqual(systemd_socket(spec("tcp/server:systemd"), environ), 3)
        self.assertEqual(systemd_socket(spec("udp/listen:systemd:1"), environ), 4)
        e = self.assertRaises(ValueError, systemd_socket, spec("tcp/server:systemd:host"), environ)
        self.assertEqual(str(e), "'tcp/server:systemd:host': systemd passed 2 socket(s) but no names "
                                 "(LISTEN_FDNAMES): use tcp/server:systemd:N, or name them (FileDescriptorName= "
                                 "in the unit, --fdname with systemd-socket-activate)")

    def test_notSystemd(self):
        """
        Other addresses, Twisted's full systemd description included, are
        not these forms.
        """
        for text in ("tcp/server:127.0.0.1:12345", "tcp/server:systemd:domain=INET:index=0"):
            self.assertIsNone(systemd_socket(spec(text), self.environ()))

    def test_missing(self):
        """
        A socket not passed (no such index or name, or not this process's)
        is a one-line error naming the connector.
        """
        for text, environ in [("tcp/server:systemd:2", self.environ()),
                              ("tcp/server:systemd:nope", self.environ()),
                              ("tcp/server:systemd", {"LISTEN_PID": "1", "LISTEN_FDS": "1",
                                                      "LISTEN_FDNAMES": "x"})]:
            e = self.assertRaises(ValueError, systemd_socket, spec(text), environ)
            self.assertIn("'{}': systemd passed no such socket".format(text), str(e))

    def test_endpoint(self):
        """
        A stream server end written C{KIND/server:systemd} listens on the
        socket passed.
        """
        from twisted.internet import endpoints

        self.patch(endpoints._SystemdParser, "_sddaemon",
                   __import__("twisted.python.systemd", fromlist=["ListenFDs"]).ListenFDs([3], ("tunnel",)))
        endpoint = server_endpoint(FakeReactor(), spec("tcp/server:systemd:tunnel"))
        self.assertIsInstance(endpoint, SystemdServerEndpoint)
        self.assertEqual(endpoint.descriptor, 3)
