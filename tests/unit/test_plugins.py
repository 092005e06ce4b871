"""
Tests that the connector kinds and the twistd plugin are found through
Twisted's plugin system.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import uhppoted_tunnel.plugins
from uhppoted_tunnel.interfaces import IConnectorMaker
from uhppoted_tunnel.app.spec import connector_makers


class ConnectorPluginTests(SynchronousTestCase):
    def test_discovery(self):
        """
        Every built-in connector kind is found as an L{IConnectorMaker}
        plugin.
        """
        makers = connector_makers()
        for prefix in ("udp/listen:", "udp/broadcast:", "tcp/server:", "tcp/client:"):
            self.assertIn(prefix, makers)

    def test_interface(self):
        """
        Each connector plugin provides L{IConnectorMaker} and L{IPlugin},
        and says which roles each of its kinds can play.
        """
        makers = list(getPlugins(IConnectorMaker, uhppoted_tunnel.plugins))
        self.assertTrue(makers)
        for maker in makers:
            verifyObject(IConnectorMaker, maker)
            self.assertTrue(IPlugin.providedBy(maker))
            for prefix in maker.prefixes:
                self.assertTrue(maker.roles(prefix) <= {"in", "out"})
                self.assertTrue(maker.roles(prefix))


class TwistdPluginTests(SynchronousTestCase):
    def test_uhtunnel(self):
        """
        twistd finds the C{uhtunnel} service maker, whose options are the
        tunnel's.
        """
        from uhppoted_tunnel.app.options import Options

        [maker] = [m for m in getPlugins(IServiceMaker) if m.tapname == "uhtunnel"]
        self.assertIs(maker.options, Options)

    def test_reactor(self):
        """
        twistd finds the C{uhppoted} reactor (C{twistd -r uhppoted}), which
        installs the tunnel's own epoll reactor.
        """
        from twisted.application.reactors import IReactorInstaller

        [installer] = [r for r in getPlugins(IReactorInstaller) if r.shortName == "uhppoted"]
        self.assertEqual(installer.moduleName, "uhppoted_tunnel.link.reactor")


class EveryKindTests(SynchronousTestCase):
    def test_everyKind(self):
        """
        Every connector kind the README lists is found, each by exactly one
        plugin, with the roles it can play.
        """
        from uhppoted_tunnel.interfaces import IN, OUT

        both = {IN, OUT}
        expected = {
            "udp/listen:": {IN}, "udp/broadcast:": {OUT}, "udp/event:": both,
            "tcp/server:": both, "tcp/client:": both, "tcp/event/server:": both, "tcp/event/client:": both,
            "tls/server:": both, "tls/client:": both, "tls/event/server:": both, "tls/event/client:": both,
            "ws/server:": both, "ws/client:": both, "ws/event/server:": both, "ws/event/client:": both,
            "wss/server:": both, "wss/client:": both, "wss/event/server:": both, "wss/event/client:": both,
            "http/": {IN}, "https/": {IN}, "ip/out:": {OUT},
            "grpc/server:": both, "grpc/client:": both, "grpc/event/server:": both, "grpc/event/client:": both,
            "grpcs/server:": both, "grpcs/client:": both, "grpcs/event/server:": both, "grpcs/event/client:": both,
            "zmq/server:": both, "zmq/client:": both, "zmq/event/server:": both, "zmq/event/client:": both,
            "xmpp/client:": both, "xmpp/event/client:": both,
        }
        found = {}
        for maker in getPlugins(IConnectorMaker, uhppoted_tunnel.plugins):
            for prefix in maker.prefixes:
                self.assertNotIn(prefix, found, "two plugins claim " + prefix)
                found[prefix] = set(maker.roles(prefix))
        for prefix, roles in expected.items():
            self.assertEqual(found.get(prefix), roles, prefix)
