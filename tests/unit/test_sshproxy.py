"""
Tests for the SSH proxy (C{--proxy ssh://}): its URLs, the files it reads
(identity, passphrase, known_hosts), host key verification, the
keepalive, the forwarded channel as a transport, and the endpoint's one
shared connection, on fakes and a fake clock.
"""

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twisted.conch.ssh.common import NS, getNS
from twisted.conch.error import ConchError
from twisted.conch.ssh.keys import Key
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.interfaces import OUT
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.proxy import describe, proxy_for
from uhppoted_tunnel.transports.proxy.ssh import SSHEndpoint
from uhppoted_tunnel.transports.proxy.sshchannel import ForwardedChannel
from uhppoted_tunnel.transports.proxy.sshconn import KeyLogin, SSHClient, SSHSession, login_key
from uhppoted_tunnel.transports.proxy.sshfiles import (MAX_FILE, HostKeyRefused, KnownHosts, describe_key,
                                                       fingerprint, load_identity)
from uhppoted_tunnel.transports.proxy.keymode import identity_mode_warning
from uhppoted_tunnel.transports.proxy.urls import ProxyError, SSHProxy, parse_proxy
from uhppoted_tunnel.transports.tls.secure import SecureClientEndpoint, TLSConnectorMaker
from uhppoted_tunnel.transports.tcp.options import validate_identity, validate_known_hosts, validate_passphrase
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor

from tests import certs
from tests.unit.test_proxy import SETTINGS, Settings

PROXY = SSHProxy("jump.example.com", 2222, "tunnel")


def new_key():
    return Key(ed25519.Ed25519PrivateKey.generate())


def openssh_key(private=None, passphrase=None):
    """
    A private key as ssh-keygen writes it (a new ed25519 one by default).
    """
    private = private or ed25519.Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)


def write(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


class URLTests(SynchronousTestCase):
    def test_ssh(self):
        """
        C{ssh://USER@HOST[:PORT]} reads as an L{SSHProxy}, port 22 if none;
        it shows as C{USER@HOST:PORT} and names itself in known_hosts as
        OpenSSH does.
        """
        self.assertEqual(parse_proxy("ssh://tunnel@jump.example.com"), SSHProxy("jump.example.com", 22, "tunnel"))
        proxy = parse_proxy("ssh://tunnel@jump.example.com:2222")
        self.assertEqual(str(proxy), "tunnel@jump.example.com:2222")
        self.assertEqual(proxy.known_host, "[jump.example.com]:2222")
        self.assertEqual(parse_proxy("ssh://t@[::1]").known_host, "::1")

    def test_refused(self):
        """
        An ssh:// URL without a user, or with a password, is refused with
        a message saying what to give instead.
        """
        e = self.assertRaises(ValueError, parse_proxy, "ssh://jump.example.com")
        self.assertIn("no user name", str(e))
        e = self.assertRaises(ValueError, parse_proxy, "ssh://tunnel:secret@jump.example.com")
        self.assertIn("takes no password", str(e))
        self.assertNotIn("secret", str(e))
        e = self.assertRaises(ValueError, parse_proxy, "ssh://tunnel@jump.example.com/path")
        self.assertIn("ssh://USER@HOST[:PORT]", str(e))

    def test_notForEveryEnd(self):
        """
        An end that cannot dial through SSH (grpc) is told so.
        """
        _, spec = parse("tcp/client:example.com:1", {p: StreamConnectorMaker() for p in StreamConnectorMaker().prefixes})
        settings = Settings(SETTINGS, proxy="ssh://t@jump")
        e = self.assertRaises(ValueError, proxy_for, spec, settings)
        self.assertIn("cannot dial through an SSH server", str(e))
        self.assertIsInstance(proxy_for(spec, settings, ssh=True)[0], SSHProxy)


class KnownHostsTests(SynchronousTestCase):
    def setUp(self):
        self.key = new_key().public()
        self.path = self.mktemp()

    def known(self, *lines):
        write(self.path, b"".join(line + b"\n" for line in lines), 0o644)
        return KnownHosts(self.path)

    def test_fingerprint(self):
        """
        A key's fingerprint is written as ssh-keygen -l writes it.
        """
        digest = base64.b64encode(hashlib.sha256(self.key.blob()).digest()).rstrip(b"=").decode()
        self.assertEqual(fingerprint(self.key), "SHA256:" + digest)

    def test_plain(self):
        """
        A plain entry for C{[HOST]:PORT} trusts its key for that name only.
        """
        known = self.known(b"# comment", b"[jump]:2222 " + self.key.toString("openssh"))
        known.verify("[jump]:2222", self.key)
        self.assertRaises(HostKeyRefused, known.verify, "jump", self.key)

    def test_hashed(self):
        """
        A hashed entry (ssh-keygen -H) matches its name.
        """
        salt = os.urandom(20)
        digest = hmac.new(salt, b"jump", hashlib.sha1).digest()
        line = b"|1|" + base64.b64encode(salt) + b"|" + base64.b64encode(digest) + b" " + self.key.toString("openssh")
        self.known(line).verify("jump", self.key)

    def test_unknown(self):
        """
        A key not listed is refused with one line naming its type and
        fingerprint, and the fix.
        """
        known = self.known(b"other " + self.key.toString("openssh"))
        e = self.assertRaises(HostKeyRefused, known.verify, "jump", self.key)
        self.assertIn("offered host key ssh-ed25519 " + fingerprint(self.key), str(e))
        self.assertIn("does not list: add it (ssh-keyscan)", str(e))
        self.assertNotIn("\n", str(e))

    def test_changed(self):
        """
        Another key of the same type listed for the name: the key changed.
        """
        known = self.known(b"jump " + new_key().public().toString("openssh"))
        e = self.assertRaises(HostKeyRefused, known.verify, "jump", self.key)
        self.assertIn("the key changed", str(e))

    def test_revoked(self):
        """
        A key listed under @revoked is refused even when also listed.
        """
        key = self.key.toString("openssh")
        known = self.known(b"@revoked * " + key, b"jump " + key)
        e = self.assertRaises(HostKeyRefused, known.verify, "jump", self.key)
        self.assertIn("revoked", str(e))

    def test_bounded(self):
        """
        A file larger than L{MAX_FILE} is not read; check says so, as it
        says of a file that lists nothing or is missing.
        """
        write(self.path, b"#" * (MAX_FILE + 1))
        self.assertIn("larger than", str(self.assertRaises(ValueError, KnownHosts(self.path).verifiable)))
        self.assertIn("lists no host keys", str(self.assertRaises(ValueError, self.known(b"garbage").verifiable)))
        missing = KnownHosts(self.path + ".missing")
        self.assertIn("No such file", str(self.assertRaises(ValueError, missing.verifiable)))
        self.known(b"jump " + self.key.toString("openssh")).verifiable()


class IdentityTests(SynchronousTestCase):
    def setUp(self):
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.path = self.mktemp()

    def openssh(self, passphrase=None):
        return openssh_key(self.private, passphrase)

    def test_plain(self):
        """
        An unencrypted OpenSSH ed25519 key loads.
        """
        write(self.path, self.openssh())
        self.assertEqual(load_identity(self.path).public(), Key(self.private).public())

    def test_passphrase(self):
        """
        An encrypted key loads with the first line of the passphrase file;
        without it, or with a wrong one, the message says which.
        """
        write(self.path, self.openssh(b"open sesame"))
        phrase = write(self.mktemp(), b"open sesame\nignored\n")
        self.assertFalse(load_identity(self.path, phrase).isPublic())
        self.assertIn("give its passphrase", str(self.assertRaises(ValueError, load_identity, self.path)))
        wrong = write(self.mktemp(), b"wrong\n")
        self.assertIn("does not decrypt", str(self.assertRaises(ValueError, load_identity, self.path, wrong)))

    def test_notAPrivateKey(self):
        """
        A public key, or not a key at all, is refused by name.
        """
        write(self.path, Key(self.private).public().toString("openssh"))
        self.assertIn("is a public key", str(self.assertRaises(ValueError, load_identity, self.path)))
        write(self.path, b"hello")
        self.assertIn("not an OpenSSH private key", str(self.assertRaises(ValueError, load_identity, self.path)))

    def test_mode(self):
        """
        A key file others can read is warned of; a 0600 one is not.
        """
        write(self.path, self.openssh(), 0o644)
        self.assertIn("chmod 600", identity_mode_warning(self.path))
        os.chmod(self.path, 0o600)
        self.assertIsNone(identity_mode_warning(self.path))

    def test_check(self):
        """
        C{check}'s validations name an unreadable identity, a passphrase
        file without an identity, and an unreadable known_hosts file.
        """
        missing = self.path + ".missing"
        self.assertEqual(validate_identity(missing, {}), "'{}': No such file or directory".format(missing))
        write(self.path, self.openssh())
        self.assertIsNone(validate_identity(self.path, {}))
        self.assertIn("without --ssh-identity", validate_passphrase(self.path, {}))
        self.assertIsNone(validate_passphrase(self.path, {"ssh-identity": self.path}))
        self.assertIn("No such file", validate_known_hosts(missing, {}))


class FakeConnection:
    """
    An C{SSHConnection} as a channel sees it.
    """

    def __init__(self):
        self.sent = []
        self.closed = []
        self.opened = []
        self.transport = None

    def sendData(self, channel, data):
        self.sent.append(data)

    def sendClose(self, channel):
        self.closed.append(channel)
        channel.localClosed = True

    def sendEOF(self, channel):
        pass

    def openChannel(self, channel, extra=b""):
        channel.conn = self
        self.opened.append((channel, extra))


class Recorder(Protocol):
    def __init__(self):
        self.data = []
        self.lost = None

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class ChannelTests(SynchronousTestCase):
    def setUp(self):
        self.ready = Deferred()
        self.done = []
        self.protocol = Recorder()
        self.channel = ForwardedChannel(PROXY, "127.0.0.1", 12345, Factory.forProtocol(lambda: self.protocol),
                                        self.ready, self.done.append)
        self.channel.conn = FakeConnection()

    def test_interface(self):
        """
        The channel is a TCP-like transport, consumer and producer.
        """
        for interface in (ITCPTransport, IConsumer, IPushProducer):
            verifyObject(interface, self.channel)

    def test_open(self):
        """
        Once the server has connected, the end's protocol runs over the
        channel: its peer is the target, its writes are channel data, the
        channel's data is its data.
        """
        self.channel.remoteWindowLeft, self.channel.remoteMaxPacket = 1000, 100
        self.channel.channelOpen(b"")
        self.assertIs(self.successResultOf(self.ready), self.protocol)
        self.assertEqual((self.protocol.transport.getPeer().host, self.protocol.transport.getPeer().port),
                         ("127.0.0.1", 12345))
        self.protocol.transport.write(b"x" * 150)
        self.assertEqual(self.channel.conn.sent, [b"x" * 100, b"x" * 50])
        self.channel.dataReceived(b"frame")
        self.assertEqual(self.protocol.data, [b"frame"])
        self.channel.closed()
        self.assertIsNotNone(self.protocol.lost)
        self.assertEqual(self.done, [self.channel])

    def test_request(self):
        """
        The open request names the target.
        """
        self.assertIn(b"\x00\x00\x00\x09127.0.0.1\x00\x00\x30\x39", self.channel.request())

    def refused(self, code, text=b"refused"):
        self.channel.openFailed(ConchError(text, code))
        return str(self.failureResultOf(self.ready, ProxyError).value)

    def test_prohibited(self):
        """
        Forwarding forbidden (code 1) says what to allow in sshd_config.
        """
        message = self.refused(1)
        self.assertIn("did not forward to 127.0.0.1:12345: forwarding is forbidden (administratively prohibited)",
                      message)
        self.assertIn("AllowTcpForwarding", message)
        self.assertEqual(self.done, [self.channel])

    def test_targetRefused(self):
        """
        The target refusing (code 2) asks whether the host half listens.
        """
        self.assertIn("is the host half listening there?", self.refused(2))

    def test_otherCode(self):
        """
        Another code is shown with the server's text.
        """
        self.assertIn("refused (no way, code 99)", self.refused(99, b"no way"))

    def test_window(self):
        """
        A full window pauses the producer registered on the channel, and
        room resumes it; writes past the window wait in the channel.
        """
        self.channel.remoteWindowLeft, self.channel.remoteMaxPacket = 10, 100
        self.channel.channelOpen(b"")
        paused = []

        class Producer:
            def pauseProducing(self):
                paused.append(True)

            def resumeProducing(self):
                paused.append(False)

        self.channel.registerProducer(Producer(), True)
        self.channel.write(b"y" * 15)
        self.assertEqual((self.channel.conn.sent, paused), ([b"y" * 10], [True]))
        self.channel.addWindowBytes(100)
        self.assertEqual((self.channel.conn.sent, paused), ([b"y" * 10, b"y" * 5], [True, False]))

    def test_closeAfterDrain(self):
        """
        A close asked for while data waits for the window is sent once
        the data is.
        """
        self.channel.remoteWindowLeft, self.channel.remoteMaxPacket = 2, 100
        self.channel.channelOpen(b"")
        self.channel.write(b"abcd")
        self.channel.loseConnection()
        self.assertEqual(self.channel.conn.closed, [])
        self.channel.addWindowBytes(10)
        self.assertEqual((self.channel.conn.sent, self.channel.conn.closed), ([b"ab", b"cd"], [self.channel]))

    def test_abort(self):
        """
        Abort drops what waits for the window and closes the channel at
        once.
        """
        self.channel.remoteWindowLeft, self.channel.remoteMaxPacket = 0, 100
        self.channel.channelOpen(b"")
        self.channel.write(b"z")
        self.channel.abortConnection()
        self.assertEqual((self.channel.buf, self.channel.conn.closed), (b"", [self.channel]))
        self.channel.abortConnection()
        self.assertEqual(self.channel.conn.closed, [self.channel])


class FakeTransport:
    """
    An C{SSHClient} as its session sees it.
    """

    proxy = PROXY

    def __init__(self):
        self.packets = []
        self.aborted = False
        self.why = None
        self.transport = self

    def abort(self, why):
        self.why = why
        self.aborted = True

    def sendPacket(self, kind, data):
        self.packets.append((kind, data))

    def abortConnection(self):
        self.aborted = True


class KeepaliveTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.ready = Deferred()
        self.session = SSHSession(self.ready, self.clock, 6.0)
        self.session.transport = FakeTransport()
        self.session.serviceStarted()
        self.addCleanup(self.session.serviceStopped)

    def test_ready(self):
        """
        The session is handed over once started.
        """
        self.assertIs(self.successResultOf(self.ready), self.session)

    def test_answered(self):
        """
        A keepalive request goes out every half dead-peer timeout (at most
        15 s); answered, the connection stays.
        """
        self.clock.advance(3)
        self.assertEqual(len(self.session.transport.packets), 1)
        self.assertIn(b"keepalive@openssh.com", self.session.transport.packets[0][1])
        self.session.ssh_REQUEST_FAILURE(b"")
        self.clock.advance(6)
        self.assertFalse(self.session.transport.aborted)

    def test_unanswered(self):
        """
        A keepalive unanswered for the dead-peer timeout closes the
        connection.
        """
        self.clock.advance(3)
        self.clock.advance(6)
        self.assertTrue(self.session.transport.aborted)
        self.assertIn("keepalives unanswered (--dead-peer-timeout)", self.session.transport.why)

    def test_stopped(self):
        """
        A stopped session leaves no timer behind.
        """
        self.clock.advance(3)
        self.session.serviceStopped()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HostKeyTests(SynchronousTestCase):
    def test_verify(self):
        """
        The client accepts a listed key and refuses another with the line
        naming it.
        """
        key = new_key().public()
        path = write(self.mktemp(), b"[jump.example.com]:2222 " + key.toString("openssh") + b"\n")
        client = SSHClient(PROXY, KnownHosts(path), [], None, Clock(), 60.0, Deferred(), None)
        self.assertTrue(self.successResultOf(client.verifyHostKey(key.blob(), b"")))
        other = new_key().public()
        failure = self.failureResultOf(client.verifyHostKey(other.blob(), b""), ProxyError)
        self.assertIn("offered host key ssh-ed25519 " + fingerprint(other), str(failure.value))


class FakeDial:
    """
    An endpoint that records the protocols it is asked to connect.
    """

    def __init__(self):
        self.protocols = []

    def connect(self, factory):
        self.protocols.append(factory.buildProtocol(None))
        return Deferred()


class FakeSession(FakeConnection):
    """
    A ready L{SSHSession}, as the endpoint sees it.
    """


class EndpointTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dial = FakeDial()
        self.endpoint = SSHEndpoint(self.dial, PROXY, "127.0.0.1", 12345, self.clock, 15.0, 60.0, None, [])

    def attempt(self):
        protocol = Recorder()
        return self.endpoint.connect(Factory.forProtocol(lambda: protocol))

    def test_interface(self):
        """
        The endpoint is a stream client endpoint.
        """
        verifyObject(IStreamClientEndpoint, self.endpoint)

    def test_shared(self):
        """
        Attempts share one SSH connection: made once, each opens its own
        channel on it.
        """
        first, second = self.attempt(), self.attempt()
        self.assertEqual(len(self.dial.protocols), 1)
        session = FakeSession()
        self.dial.protocols[0].ready.callback(session)
        self.assertEqual(len(session.opened), 2)
        for channel, _ in session.opened:
            channel.channelOpen(b"")
        self.successResultOf(first)
        self.successResultOf(second)
        self.attempt()
        self.assertEqual((len(self.dial.protocols), len(session.opened)), (1, 3))

    def test_remadeAfterLoss(self):
        """
        After the connection is lost the next attempt makes a new one.
        """
        self.attempt()
        client = self.dial.protocols[0]
        client.ready.callback(FakeSession())
        client.lost("gone")
        self.attempt()
        self.assertEqual(len(self.dial.protocols), 2)

    def test_setupFails(self):
        """
        A connection that fails before it is ready fails every attempt
        waiting on it with its reason, and the next attempt dials again.
        """
        first, second = self.attempt(), self.attempt()
        self.dial.protocols[0].ready.errback(Failure(ProxyError("refused to log in")))
        for d in (first, second):
            self.assertEqual(str(self.failureResultOf(d, ProxyError).value), "refused to log in")
        self.attempt()
        self.assertEqual(len(self.dial.protocols), 2)

    def test_channelTimeout(self):
        """
        A channel the server does not open within the handshake timeout
        fails the attempt.
        """
        d = self.attempt()
        self.dial.protocols[0].ready.callback(FakeSession())
        self.clock.advance(15)
        self.assertIn("did not open a channel", str(self.failureResultOf(d, ProxyError).value))

    def test_setupTimeout(self):
        """
        An SSH server that does not finish the handshake and login within
        the handshake timeout fails the attempt, saying so, and is
        dropped.
        """
        d = self.attempt()
        client = self.dial.protocols[0]
        client.transport = FakeTransport()
        self.clock.advance(15)
        self.assertIn("did not complete the handshake and login within 15s",
                      str(self.failureResultOf(d, ProxyError).value))
        self.assertTrue(client.transport.aborted)

    def test_idle(self):
        """
        A connection with no channel is closed after the idle time.
        """
        d = self.attempt()
        client = self.dial.protocols[0]
        client.transport = FakeTransport()
        client.transport.loseConnection = lambda: setattr(client.transport, "lost", True)
        session = FakeSession()
        client.ready.callback(session)
        channel = session.opened[0][0]
        channel.channelOpen(b"")
        self.successResultOf(d)
        channel.closed()
        self.clock.advance(self.endpoint.idle)
        self.assertTrue(client.transport.lost)


class ClientEndTests(SynchronousTestCase):
    """
    --proxy ssh:// in the stream client ends, and in check's notes.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.identity = write(self.mktemp(), openssh_key(), 0o600)
        self.known = write(self.mktemp(), b"[127.0.0.1]:2222 " + new_key().public().toString("openssh") + b"\n")

    def settings(self, environ=None, **values):
        values = {"proxy": "ssh://tunnel@127.0.0.1:2222", "ssh-identity": self.identity,
                  "ssh-known-hosts": self.known, **values}
        settings = Settings(SETTINGS, **values)
        settings.environ = environ or {}
        return settings

    def make(self, text, maker=StreamConnectorMaker("tcp"), environ=None, **values):
        _, spec = parse(text, {prefix: maker for prefix in maker.prefixes})
        return maker.makeEnd(spec, OUT, self.settings(environ, **values), None, self.reactor)

    def messages(self):
        return [formatEvent(event) for event in self.logged]

    def test_endpoint(self):
        """
        A tcp/client with --proxy ssh:// dials through an L{SSHEndpoint}
        to its own address, and says so.
        """
        end = self.make("tcp/client:127.0.0.1:12345")
        self.assertIsInstance(end.endpoint, SSHEndpoint)
        self.assertEqual((end.endpoint.host, end.endpoint.port), ("127.0.0.1", 12345))
        self.assertEqual(str(end.endpoint.proxy), "tunnel@127.0.0.1:2222")
        self.assertIn("dialling 127.0.0.1:12345 through SSH server tunnel@127.0.0.1:2222 (--proxy)", self.messages())

    def test_tls(self):
        """
        A tls/client's TLS runs over the SSH channel.
        """
        files = certs.make(self.mktemp())
        end = self.make("tls/client:127.0.0.1:443", TLSConnectorMaker(), **{"ca-cert": files["ca"][0]})
        self.assertIsInstance(end.endpoint, SecureClientEndpoint)
        self.assertIsInstance(end.endpoint.endpoint, SSHEndpoint)

    def test_modeWarned(self):
        """
        An identity others can read is warned of at start.
        """
        os.chmod(self.identity, 0o644)
        self.make("tcp/client:127.0.0.1:12345")
        self.assertTrue([m for m in self.messages() if "can be read by others" in m])

    def test_agent(self):
        """
        Without --ssh-identity the agent's socket is used; without either
        the end cannot start, and says what to give.
        """
        end = self.make("tcp/client:127.0.0.1:1", environ={"SSH_AUTH_SOCK": "/run/agent"}, **{"ssh-identity": None})
        self.assertEqual(end.endpoint.keys, [])
        self.assertIsNotNone(end.endpoint.agent_endpoint)
        e = self.assertRaises(ValueError, self.make, "tcp/client:127.0.0.1:1", **{"ssh-identity": None})
        self.assertIn("no key to log in with", str(e))

    def test_knownHostsRequired(self):
        """
        A known_hosts file that cannot be read stops the end at start.
        """
        e = self.assertRaises(ValueError, self.make, "tcp/client:127.0.0.1:1", **{"ssh-known-hosts": "/nonexistent"})
        self.assertIn("--ssh-known-hosts", str(e))

    def test_describe(self):
        """
        check's note names the SSH server, and warns of a readable key.
        """
        _, spec = parse("tcp/client:127.0.0.1:1", {p: StreamConnectorMaker() for p in StreamConnectorMaker().prefixes})
        os.chmod(self.identity, 0o640)
        note = describe(spec, self.settings(), False)
        self.assertIn("through SSH server tunnel@127.0.0.1:2222 (--proxy)", note)
        self.assertIn("chmod 600", note)


class RSATests(SynchronousTestCase):
    """
    RSA keys log in as rsa-sha2-256, which OpenSSH 8.8 and later require.
    """

    def setUp(self):
        self.key = Key(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def test_identity(self):
        """
        An RSA identity names rsa-sha2-256 and signs with it; its blob is
        still ssh-rsa's, and the signature verifies.
        """
        key = login_key(self.key)
        self.assertEqual(key.public().sshType(), b"rsa-sha2-256")
        self.assertEqual(key.public().blob(), self.key.public().blob())
        signature = key.sign(b"data")
        self.assertEqual(getNS(signature)[0], b"rsa-sha2-256")
        self.assertTrue(self.key.public().verify(signature, b"data"))
        self.assertTrue(describe_key(key.public()).startswith("ssh-rsa SHA256:"))

    def test_other(self):
        """
        Other keys are offered as they are.
        """
        key = new_key()
        self.assertIs(login_key(key), key)

    def test_agent(self):
        """
        An agent's RSA key is asked for an rsa-sha2-256 signature (flag 2).
        """

        class Agent:
            def __init__(self):
                self.requests = []

            def sendRequest(self, kind, data):
                self.requests.append((kind, data))
                return Deferred()

        agent = Agent()
        login = KeyLogin(b"tunnel", None, [], agent, [self.key.public().blob()])
        public = login.getPublicKey()
        login.signData(public, b"data")
        kind, data = agent.requests[0]
        self.assertEqual((kind, data), (13, NS(self.key.public().blob()) + NS(b"data") + b"\x00\x00\x00\x02"))
