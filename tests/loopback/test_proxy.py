# -*- test-case-name: tests.loopback.test_proxy -*-
"""
Client ends through a real HTTP proxy: Debian's C{tinyproxy}, started by
each test on 127.0.0.1 with its own configuration in the test's folder,
between real tunnel processes (a site dialling its host through the
proxy), the controller emulator and the C{uhppoted} client.

A test for another client kind through the proxy is one more method:
C{self.through_proxy(SERVER, CLIENT)} with the two connector strings (the
client's with C{{port}} for the server's port), then the requests.
"""

import datetime
import os
import re

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import Client, run_tunnel, start_emulator, start_host, workdir
from tests.loopback.pairs import A, B, Pair, Pairs
from tests.loopback.tinyproxy import PASSWORD, USER, connect_line, start_tinyproxy

class ThroughProxyTests(Pairs, TestCase):
    """
    A site dials its host through tinyproxy: tcp/client and tls/client,
    with the proxy given by --proxy or by the environment, with and
    without proxy authentication.
    """

    def setUp(self):
        self.files = certs.make(os.path.join(workdir(self), "certs"))

    def tls(self, role, client_auth=False):
        """
        The flags of a TLS end: the CA, and the role's certificate and key.
        """
        cert, key = self.files[role]
        return ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key] + (
            ["--client-auth"] if client_auth else [])

    @inlineCallbacks
    def through_proxy(self, server, client, host_args=(), site_args=(), proxy="http://{proxy}", env=None,
                      auth=None):
        """
        Start the emulator (controllers A and B), tinyproxy, a host half
        (udp/listen -> C{server}) and a site half (C{client} ->
        udp/broadcast) that reaches the host through the proxy, and wait
        until the proxy has opened the tunnel and both halves are
        connected.

        :param server: the host's out connector, e.g. C{tcp/server:127.0.0.1:0}.
        :param client: the site's in connector, C{{port}} standing for the
            server's port, e.g. C{tcp/client:127.0.0.1:{port}}.
        :param proxy: the site's C{--proxy}, C{{proxy}} standing for the
            proxy's C{127.0.0.1:PORT}, or C{None} for none.
        :param env: variables for the site's environment (C{{proxy}} too).
        :param auth: C{(user, password)} the proxy requires, or C{None}.
        :return: a Deferred firing with a L{Pair}: C{emulator},
            C{tinyproxy}, C{proxy_port}, C{host}, C{udp_port},
            C{stream_port}, C{site} and C{client}.
        """
        pair = Pair()
        pair.emulator, pair.emulator_port = yield start_emulator(self, A, B)
        pair.tinyproxy, pair.proxy_port = yield start_tinyproxy(self, auth)
        address = "127.0.0.1:{}".format(pair.proxy_port)
        pair.host, pair.udp_port = yield self._host(server, host_args)
        match = yield pair.host.waitFor(r"\b(?!UDP\b)[A-Z]+\s+listening on 127\.0\.0\.1:(\d+)\s*$")
        pair.stream_port = int(match.group(1))
        flags = ["--proxy", proxy.format(proxy=address)] if proxy is not None else []
        environment = {name: value.format(proxy=address) for name, value in (env or {}).items()}
        pair.site = run_tunnel(self, "site", "--in", client.format(port=pair.stream_port),
                               "--out", "udp/broadcast:127.0.0.1:{}".format(pair.emulator_port), "--udp-timeout", "1s",
                               *(flags + list(site_args)), env=environment)
        yield pair.tinyproxy.waitFor(connect_line(pair.stream_port))
        yield pair.site.waitFor(r"proxy {} opened a tunnel to 127\.0\.0\.1:{}".format(re.escape(address),
                                                                                     pair.stream_port))
        yield pair.site.waitFor(r"connected to {}\s*$".format(re.escape(address)))
        yield pair.host.waitFor(r"connected to 127\.0\.0\.1:\d+\s*$")
        pair.client = Client(pair.udp_port)
        return pair

    @inlineCallbacks
    def _host(self, server, host_args):
        """
        A host half with flags of its own (a TLS end's certificates).
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", server, *host_args)
        match = yield host.waitFor(r"UDP\s+listening on 127\.0\.0\.1:(\d+)")
        return host, int(match.group(1))

    @inlineCallbacks
    def assertCarries(self, pair):
        """
        Discovery, a unicast request and a card written and read back, all
        through the proxy.
        """
        yield self.assertDiscovers(pair.client)
        yield self.assertUnicast(pair.client)
        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield pair.client.put_card(A, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield pair.client.get_card(A, 8165538)
        self.assertEqual((card.controller, card.card_number, card.pin), (A, 8165538, 7531))

    def assertStartLine(self, pair, why):
        """
        The site said at start which proxy it dials through, and why.
        """
        self.assertRegex(pair.site.output(), r"INFO\s+\w+\s+dialling 127\.0\.0\.1:{} through HTTP proxy "
                                             r"127\.0\.0\.1:{} \({}\)".format(pair.stream_port, pair.proxy_port,
                                                                              re.escape(why)))

    @inlineCallbacks
    def test_tcp(self):
        """
        A tcp/client site reaches its host through the proxy given by
        --proxy and carries the client's requests.
        """
        pair = yield self.through_proxy("tcp/server:127.0.0.1:0", "tcp/client:127.0.0.1:{port}")
        self.assertStartLine(pair, "--proxy")
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_tls(self):
        """
        A tls/client site with a client certificate reaches its host (which
        requires one) through the proxy: the TLS handshake runs inside the
        tunnel the proxy opened, end to end.
        """
        pair = yield self.through_proxy("tls/server:127.0.0.1:0", "tls/client:127.0.0.1:{port}",
                                        host_args=self.tls("server", client_auth=True),
                                        site_args=self.tls("client"))
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_ws(self):
        """
        A ws/client site reaches its host through the proxy its environment
        names for plain ends (http_proxy): the upgrade and the messages go
        through the tunnel the proxy opened.
        """
        pair = yield self.through_proxy("ws/server:127.0.0.1:0/tunnel", "ws/client:127.0.0.1:{port}/tunnel",
                                        proxy=None, env={"http_proxy": "http://{proxy}",
                                                         "https_proxy": "http://127.0.0.1:9"})
        self.assertStartLine(pair, "http_proxy")
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_wss(self):
        """
        A wss/client site with a client certificate reaches its host (which
        requires one) through the proxy: TLS and the upgrade inside the
        tunnel the proxy opened.
        """
        pair = yield self.through_proxy("wss/server:127.0.0.1:0/tunnel", "wss/client:127.0.0.1:{port}/tunnel",
                                        host_args=self.tls("server", client_auth=True), site_args=self.tls("client"))
        self.assertStartLine(pair, "--proxy")
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_environment(self):
        """
        Without --proxy a tls/client site follows https_proxy in its
        environment, and says so.
        """
        pair = yield self.through_proxy("tls/server:127.0.0.1:0", "tls/client:127.0.0.1:{port}",
                                        host_args=self.tls("server", client_auth=True),
                                        site_args=self.tls("client"), proxy=None,
                                        env={"https_proxy": "http://{proxy}", "http_proxy": "http://127.0.0.1:9"})
        self.assertStartLine(pair, "https_proxy")
        yield self.assertDiscovers(pair.client)

    @inlineCallbacks
    def test_basicAuth(self):
        """
        A proxy that requires basic authentication lets a site with the
        right user and password (percent-encoded in the URL) through; the
        password is never logged.
        """
        url = "http://{}:{}@{{proxy}}".format(USER, PASSWORD.replace("-", "%2D"))
        pair = yield self.through_proxy("tcp/server:127.0.0.1:0", "tcp/client:127.0.0.1:{port}", proxy=url,
                                        auth=(USER, PASSWORD))
        yield self.assertDiscovers(pair.client)
        self.assertNotIn("s3cret", pair.site.output())

    @inlineCallbacks
    def assertRefused(self, credentials, answer):
        """
        A site whose proxy refuses it: one warning for the first attempt,
        the client end's retry line with the proxy's answer, then backoff;
        the second attempt is past --max-retries 1, and the site stops (exit
        1) with the proxy's answer as the reason. The password is never
        logged, and the host never sees a connection.

        :param credentials: C{USER:PASS@} in the site's --proxy, or C{""}.
        :param answer: a regex for the proxy's answer.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        tinyproxy, proxy_port = yield start_tinyproxy(self, (USER, PASSWORD))
        host, udp_port = yield start_host(self, "tcp/server:127.0.0.1:0")
        port = int((yield host.waitFor(r"TCP\s+listening on 127\.0\.0\.1:(\d+)")).group(1))
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port),
                          "--proxy", "http://{}127.0.0.1:{}".format(credentials, proxy_port), "--max-retries", "1")
        refusal = r"proxy 127\.0\.0\.1:{} refused CONNECT 127\.0\.0\.1:{}: {}".format(proxy_port, port, answer)
        yield site.waitFor(r"WARN\s+TCP\s+could not connect to 127\.0\.0\.1:{} \({}\): retrying in 5s$".format(
            port, refusal))
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        self.assertRegex(site.output(), r"(?m)ERROR\s+TCP\s+could not connect to 127\.0\.0\.1:{} after 2 attempt\(s\): "
                                        r"{}$".format(port, refusal))
        self.assertEqual(len(re.findall("refused CONNECT", site.output())), 2, site.recent())
        self.assertEqual(len(re.findall(connect_line(port), tinyproxy.output())), 2, tinyproxy.recent())
        self.assertNotIn("wrong-password", site.output())
        self.assertNotRegex(host.output(), r"connected to")

    def test_noCredentials(self):
        """
        A site that gives no password to a proxy that wants one gets the
        proxy's 407, once per attempt, with backoff, until --max-retries
        ends it.
        """
        return self.assertRefused("", "407 Proxy Authentication Required")

    def test_wrongPassword(self):
        """
        A wrong password is refused the same way (tinyproxy answers a wrong
        password with 401 Unauthorized, and no password with 407).
        """
        return self.assertRefused(USER + ":wrong-password@", "(?:401 Unauthorized|407 Proxy Authentication Required)")
