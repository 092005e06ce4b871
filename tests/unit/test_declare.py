"""
Tests for L{uhppoted_tunnel.core.declare}: connector plugins declare their
kinds and options without importing their transport, and the help groups
the options by plugin.
"""

from importlib import metadata

from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.app.options import Options, grouped_usage
from uhppoted_tunnel.app.spec import Makers, connector_plugins
from uhppoted_tunnel.core import extras
from uhppoted_tunnel.core.declare import BOTH, FLAG, LIST, ConnectorPlugin, MissingExtra, Option, stream_kinds
from uhppoted_tunnel.interfaces import IN, IConnectorMaker, IConnectorPlugin


class MadeMaker:
    """
    What L{ConnectorPlugin.load} makes in these tests: a record of its
    arguments and of the ends asked of it.
    """

    def __init__(self, *arguments):
        self.arguments = arguments
        self.asked = []

    def makeEnd(self, spec, role, settings, router, reactor):
        self.asked.append((spec, role))
        return "an end"


class ConnectorPluginTests(SynchronousTestCase):
    def plugin(self, **kwargs):
        return ConnectorPlugin("fake", __name__ + ":MadeMaker", stream_kinds("fake"), arguments=["fake"], **kwargs)

    def test_interfaces(self):
        """
        A declaration provides L{IConnectorPlugin} and, lazily,
        L{IConnectorMaker}.
        """
        plugin = self.plugin()
        verifyObject(IConnectorPlugin, plugin)
        verifyObject(IConnectorMaker, plugin)

    def test_kinds(self):
        """
        The declared prefixes keep their order; roles and whether a kind
        relays events come from the declaration.
        """
        plugin = self.plugin()
        self.assertEqual(plugin.prefixes, ("fake/server:", "fake/client:", "fake/event/server:", "fake/event/client:"))
        self.assertEqual(plugin.roles("fake/client:"), BOTH)
        self.assertEqual([plugin.relaysEvents(p) for p in plugin.prefixes], [False, False, True, True])
        self.assertEqual(plugin.module, __name__)

    def test_loadOnce(self):
        """
        L{ConnectorPlugin.load} makes the maker from the named module once,
        with the declared arguments; C{makeEnd} delegates to it.
        """
        plugin = self.plugin()
        maker = plugin.load()
        self.assertIsInstance(maker, MadeMaker)
        self.assertEqual(maker.arguments, ("fake",))
        self.assertIs(plugin.load(), maker)
        self.assertEqual(plugin.makeEnd("spec", IN, {}, None, None), "an end")
        self.assertEqual(maker.asked, [("spec", IN)])

    def test_makersLoadOnLookup(self):
        """
        L{Makers} lists every prefix without loading a plugin, and loads
        one when its prefix is looked up; a plain L{IConnectorMaker} plugin
        is its own maker.
        """
        plugin = self.plugin()
        plain = MadeMaker()
        plain.prefixes = ("plain/",)
        makers = Makers([plugin, plain])
        self.assertEqual(sorted(makers), sorted(plugin.prefixes + ("plain/",)))
        self.assertIsNone(plugin._loaded)
        self.assertIs(makers.declared("fake/client:"), plugin)
        self.assertIsNone(plugin._loaded)
        self.assertIsInstance(makers["fake/client:"], MadeMaker)
        self.assertIs(makers["plain/"], plain)


class MissingExtraTests(SynchronousTestCase):
    """
    A connector whose transport needs a package that is not installed is a
    one-line configuration error naming the pip extra, not a traceback.
    """

    def absent(self, extra="zmq", missing=lambda extra: []):
        return ConnectorPlugin("zmq", "tests.unit.absentextra:Maker", stream_kinds("zmq"), extra=extra,
                               missing=missing)

    def test_extraNotInstalled(self):
        """
        A plugin whose extra adds a distribution that is not installed is
        refused before its module is imported (a maker may import its
        packages only when it makes an end), naming the distribution.
        """
        asked = []

        def missing(extra):
            asked.append(extra)
            return ["pyzmq"]

        plugin = ConnectorPlugin("zmq", __name__ + ":MadeMaker", stream_kinds("zmq"), extra="zmq", missing=missing)
        e = self.assertRaises(MissingExtra, plugin.load)
        self.assertEqual(asked, ["zmq"])
        self.assertEqual(str(e), "the zmq/ connectors need the Python package 'pyzmq', which is not installed: "
                                 "pip install 'uhppoted-tunnel[zmq]'")
        self.assertIsNone(plugin._loaded)

    def test_extraInstalled(self):
        """
        With every distribution of its extra installed, the plugin loads;
        a plugin of the core install asks nothing.
        """
        asked = []
        plugin = ConnectorPlugin("fake", __name__ + ":MadeMaker", stream_kinds("fake"), extra="fake",
                                 missing=lambda extra: asked.append(extra) or [])
        self.assertIsInstance(plugin.load(), MadeMaker)
        core = ConnectorPlugin("fake", __name__ + ":MadeMaker", stream_kinds("fake"),
                               missing=lambda extra: asked.append(extra) or ["x"])
        self.assertIsInstance(core.load(), MadeMaker)
        self.assertEqual(asked, ["fake"])

    def test_load(self):
        """
        L{ConnectorPlugin.load} raises L{MissingExtra} (a C{ValueError})
        naming the missing package and the command that installs it.
        """
        e = self.assertRaises(MissingExtra, self.absent().load)
        self.assertIsInstance(e, ValueError)
        self.assertEqual((e.extra, e.missing), ("zmq", "uhppoted_tunnel_test_absent_package"))
        self.assertEqual(str(e), "the zmq/ connectors need the Python package 'uhppoted_tunnel_test_absent_package', "
                                 "which is not installed: pip install 'uhppoted-tunnel[zmq]'")

    def test_coreModuleMissing(self):
        """
        A plugin of the core install (no extra) whose module cannot be
        imported is a bug, and raises the import error as it is.
        """
        self.assertRaises(ModuleNotFoundError, self.absent(extra=None).load)

    def test_ownModuleMissing(self):
        """
        A plugin naming a module of this package that does not exist is a
        bug too, whatever its extra.
        """
        plugin = ConnectorPlugin("zmq", "uhppoted_tunnel.no_such_module:Maker", stream_kinds("zmq"), extra="zmq")
        self.assertRaises(ModuleNotFoundError, plugin.load)

    def test_options(self):
        """
        Naming such a connector fails option parsing (what C{run},
        C{check} and twistd do first) with that one line.
        """
        udp = [plugin for plugin in connector_plugins() if plugin.name == "udp"]
        options = Options(makers=Makers(udp + [self.absent()]))
        e = self.assertRaises(usage.UsageError, options.parseOptions,
                              ["--in", "udp/listen:127.0.0.1:60000", "--out", "zmq/server:127.0.0.1:12345"])
        self.assertEqual(str(e), "--out: the zmq/ connectors need the Python package "
                                 "'uhppoted_tunnel_test_absent_package', which is not installed: "
                                 "pip install 'uhppoted-tunnel[zmq]'")
        self.assertNotIn("\n", str(e))


class ExtrasTests(SynchronousTestCase):
    """
    L{extras} reads an extra's distributions from the metadata.
    """

    REQUIRES = ["twisted>=23.10", "pyzmq>=25; extra == \"zmq\"", "autobahn >= 26.10 ; extra == 'ws'",
                "grpcio>=1.85; extra == \"grpc\"", "protobuf>=7.35.1; extra == \"grpc\"",
                "pyzmq>=25; extra == \"all\"", "sphinx>=7; extra == \"docs\" or extra == \"test\""]

    def test_requirements(self):
        """
        Each extra's distributions, by name, and none of the core's.
        """
        self.assertEqual(extras.requirements("zmq", self.REQUIRES), ["pyzmq"])
        self.assertEqual(extras.requirements("ws", self.REQUIRES), ["autobahn"])
        self.assertEqual(extras.requirements("grpc", self.REQUIRES), ["grpcio", "protobuf"])
        self.assertEqual(extras.requirements("test", self.REQUIRES), ["sphinx"])
        self.assertEqual(extras.requirements("nats", self.REQUIRES), [])
        self.assertEqual(extras.requirements("zmq", None), [])

    def test_missing(self):
        """
        The extra's distributions that are not installed; nothing when the
        distribution itself is not installed (a source tree).
        """
        requires = {"uhppoted-tunnel": self.REQUIRES}.__getitem__

        def unknown(name):
            raise metadata.PackageNotFoundError(name)

        self.assertEqual(extras.missing("uhppoted-tunnel", "grpc", requires, {"grpcio"}.__contains__), ["protobuf"])
        self.assertEqual(extras.missing("uhppoted-tunnel", "grpc", requires, lambda name: True), [])
        self.assertEqual(extras.missing("uhppoted-tunnel", "grpc", unknown, lambda name: False), [])

    def test_thisInstall(self):
        """
        Where this distribution is installed, its metadata names the
        extras the plugins declare.
        """
        try:
            requires = metadata.requires("uhppoted-tunnel")
        except metadata.PackageNotFoundError:
            raise SkipTest("uhppoted-tunnel is not installed (the tests run from a source tree)") from None
        for plugin in connector_plugins():
            if plugin.extra is not None:
                self.assertTrue(extras.requirements(plugin.extra, requires), plugin.extra)


class InstalledPluginTests(SynchronousTestCase):
    def test_declarationsMatchMakers(self):
        """
        What each installed plugin declares (prefixes, roles, events) is
        what its maker says once loaded.
        """
        for plugin in connector_plugins():
            verifyObject(IConnectorPlugin, plugin)
            maker = plugin.load()
            verifyObject(IConnectorMaker, maker)
            self.assertEqual(tuple(maker.prefixes), plugin.prefixes, plugin.name)
            for prefix in plugin.prefixes:
                self.assertEqual(frozenset(maker.roles(prefix)), plugin.roles(prefix), prefix)
                self.assertEqual(bool(maker.relaysEvents(prefix)), plugin.relaysEvents(prefix), prefix)

    def test_extras(self):
        """
        The transports outside the core install name their pip extra.
        """
        extras = {plugin.name: plugin.extra for plugin in connector_plugins()}
        self.assertEqual((extras["zmq"], extras["ws"], extras["wss"], extras["grpc"], extras["grpcs"]),
                         ("zmq", "ws", "ws", "grpc", "grpc"))
        self.assertEqual((extras["nats"], extras["natss"]), ("nats", "nats"))
        self.assertEqual({extras[name] for name in ("tcp", "tls", "udp", "http", "ip", "xmpp")}, {None})

    def test_secure(self):
        """
        The kinds that use TLS are declared so, for C{check}.
        """
        secure = {prefix for plugin in connector_plugins() for prefix in plugin.secure}
        self.assertEqual({p.split("/")[0] for p in secure}, {"tls", "wss", "grpcs", "https", "natss"})

    def test_optionsDeclaredOnce(self):
        """
        No two plugins declare the same key or flag.
        """
        names = [option.name for plugin in connector_plugins() for option in plugin.options]
        self.assertEqual(len(names), len(set(names)))


class TwoOptions(usage.Options):
    optParameters = [["general", None, None, "A general option."], ["own", None, None, "A plugin's option."]]
    optFlags = [["switch", None, "A plugin's flag."]]


class HelpTests(SynchronousTestCase):
    def test_grouped(self):
        """
        The help lists the options no plugin declares first, then each
        plugin's options under its title.
        """
        plugin = ConnectorPlugin("fake", __name__ + ":MadeMaker", {"fake/": (BOTH, False)}, title="Fake (fake/)",
                                 options=[Option("own", "A plugin's option."),
                                          Option("switch", "A plugin's flag.", kind=FLAG)])
        text = grouped_usage(TwoOptions(), [plugin], width=80)
        general, _, own = text.partition("Fake (fake/) options:\n")
        self.assertIn("--general=", general)
        self.assertIn("--help", general)
        self.assertNotIn("--own", general)
        self.assertIn("--own=", own)
        self.assertIn("--switch", own)
        self.assertTrue(general.startswith("Options:\n"))

    def test_tunnelHelp(self):
        """
        The tunnel's help shows the general options, then one group per
        transport that has options, a repeatable flag in its group.
        """
        text = str(Options()).partition("\nOptions:\n")[2]
        general = text.split("\n\n")[0]
        self.assertIn("--udp-timeout=", general)
        for title, flag in [("ZeroMQ (zmq/) options:", "--zmq-server-key="),
                            ("WebSocket (ws/, wss/) options:", "--ws-origin="),
                            ("XMPP (xmpp/) options:", "--xmpp-rate="),
                            ("TLS (tls/, wss/, grpcs/, https/) options:", "--client-auth")]:
            self.assertNotIn(flag, general)
            self.assertIn(title, text)
            self.assertIn(flag, text.split(title)[1].split("\n\n")[0])

    def test_list(self):
        """
        A L{LIST} option is a repeatable flag adding to its key's list.
        """
        option = Option("things", "Things.", default=(), kind=LIST, flag="thing")
        self.assertEqual(option.command_line, "thing")
        self.assertEqual(Option("key", "A key.").command_line, "key")
