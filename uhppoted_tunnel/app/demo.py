# -*- test-case-name: tests.loopback.test_demo -*-
"""
C{uhppoted-tunnel demo}: a host half, a site half and two emulated
controllers on loopback, and an application asking through the tunnel.

Everything runs in this process on real sockets (127.0.0.1, ports chosen
by the system), then stops. It prints the two commands that would run the
same halves as separate processes, and the controller console's address:
an C{http/} end in front of the host half, whose C{/console/} page and
C{/udp/send} the demo tries once.
"""

import ipaddress
import json
import sys
import tempfile
from io import BytesIO

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from uhppoted_tunnel import emulator
from uhppoted_tunnel.app.logging import start_logging
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.tunnel import TunnelService

GET_CONTROLLER = 0x94
GET_TIME = 0x32
DEADLINE = 15.0


class Application(DatagramProtocol):
    """
    A UHPPOTE application: sends one request and collects the replies for
    a while.
    """

    def __init__(self, clock):
        self.clock = clock
        self.replies = None

    def ask(self, request, address, wait):
        """
        :return: a Deferred firing with the replies received within C{wait}
            seconds.
        """
        self.replies = []
        done = Deferred()
        self.transport.write(request, address)
        self.clock.callLater(wait, lambda: done.callback(self.replies))
        return done

    def datagramReceived(self, data, address):
        if self.replies is not None:
            self.replies.append(data)


def request(function, serial):
    return bytes([0x17, function, 0, 0]) + serial.to_bytes(4, "little") + bytes(56)


def describe_controller(reply):
    """
    A get-controller reply as one line.
    """
    serial = int.from_bytes(reply[4:8], "little")
    address, netmask, gateway = (ipaddress.IPv4Address(reply[n : n + 4]) for n in (8, 12, 16))
    mac = ":".join("{:02x}".format(b) for b in reply[20:26])
    version = "v{:x}.{:02x}".format(reply[26], reply[27])
    released = "{:02x}{:02x}-{:02x}-{:02x}".format(*reply[28:32])
    return "{:<10} {:<15} {:<15} {:<15} {}  {:<7}  {}".format(serial, str(address), str(netmask), str(gateway), mac,
                                                          version, released)


def describe_time(reply):
    serial = int.from_bytes(reply[4:8], "little")
    b = reply[8:15].hex()
    return "{}: {}{}-{}-{} {}:{}:{}".format(serial, b[0:2], b[2:4], b[4:6], b[6:8], b[8:10], b[10:12], b[12:14])


async def try_console(reactor, base, serial):
    """
    GET the console page and POST a get-time to C{/udp/send}, as the page would.

    :return: C{(status of the page, the get-time reply or None)}.
    """
    agent = Agent(reactor)
    page = await agent.request(b"GET", (base + "console/").encode("ascii"))
    await readBody(page)
    body = json.dumps({"ID": 1, "wait": True, "request": list(request(GET_TIME, serial))}).encode("ascii")
    sent = await agent.request(b"POST", (base + "udp/send").encode("ascii"),
                               Headers({b"Content-Type": [b"application/json"]}), FileBodyProducer(BytesIO(body)))
    answer = json.loads(await readBody(sent))
    return page.code, (bytes(answer["reply"]) if "reply" in answer else None)


def tunnel(reactor, *args):
    options = Options()
    options.parseOptions(list(args) + ["--rate-limit", "100"])
    return TunnelService(options, reactor)


async def demo(reactor, out):
    controllers = [emulator.Controller(serial) for serial in emulator.DEFAULT_SERIALS]
    emulated = emulator.listen(reactor, controllers)
    controllers_at = "127.0.0.1:{}".format(emulated.getHost().port)

    host = tunnel(reactor, "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
    host.startService()
    port = await host.out.whenListening()
    if port is None:
        raise RuntimeError("the host half could not listen")
    host_at = "127.0.0.1:{}".format(port.getHost().port)
    udp_at = ("127.0.0.1", host.in_.port.getHost().port)

    site = tunnel(reactor, "--in", "tcp/client:" + host_at, "--out", "udp/broadcast:" + controllers_at,
                  "--udp-timeout", "1s")
    site.startService()
    await site.in_.client.whenConnected()

    out.write("\n  host: uhppoted-tunnel --in udp/listen:{}:{} --out tcp/server:{}\n".format(*udp_at, host_at))
    out.write("  site: uhppoted-tunnel --in tcp/client:{} --out udp/broadcast:{} --udp-timeout 1s\n".format(
        host_at, controllers_at))

    # the controller console: an http/ end whose requests go in at the host half
    html = tempfile.TemporaryDirectory(prefix="uhppoted-tunnel-demo-")
    console = tunnel(reactor, "--in", "http/127.0.0.1:0", "--out", "udp/broadcast:{}:{}".format(*udp_at),
                     "--udp-timeout", "1s", "--html", html.name)
    console.startService()
    http_port = (await console.in_.whenListening()).getHost().port
    base = "http://127.0.0.1:{}/".format(http_port)
    out.write("  console: uhppoted-tunnel --in http/127.0.0.1:{} --out udp/broadcast:{}:{}\n".format(
        http_port, *udp_at))
    out.write("           serves the controller console at {}console/ (open it in a browser)\n\n".format(base))

    app = Application(reactor)
    listening = reactor.listenUDP(0, app, interface="127.0.0.1")
    try:
        replies = await app.ask(request(GET_CONTROLLER, 0), udp_at, 1.5)
        out.write("  get-all-controllers through the tunnel: {} replies\n".format(len(replies)))
        out.write("    {:<10} {:<15} {:<15} {:<15} {:<17}  {:<7}  {}\n".format(
            "serial", "address", "netmask", "gateway", "MAC", "version", "released"))
        for reply in sorted(replies):
            out.write("    " + describe_controller(reply) + "\n")
        serial = emulator.DEFAULT_SERIALS[0]
        times = await app.ask(request(GET_TIME, serial), udp_at, 0.5)
        out.write("  get-time {}: {}\n".format(serial, ", ".join(describe_time(r) for r in times) or "no reply"))
        code, reply = await try_console(reactor, base, serial)
        out.write("  the console's page answered {}; get-time from its /udp/send: {}\n\n".format(
            code, "no reply" if reply is None else describe_time(reply)))
        return 0 if len(replies) == len(controllers) and times and code == 200 and reply else 1
    finally:
        await listening.stopListening()
        await console.stopService()
        html.cleanup()
        await site.stopService()
        await host.stopService()
        await emulated.stopListening()


def main(argv, reactor, out=None):
    """
    Run the demo.

    :return: 0 if every controller answered through the tunnel.
    """
    out = out or sys.stdout
    if argv:
        sys.stderr.write("uhppoted-tunnel demo: takes no arguments\n")
        return 2
    start_logging(LogLevel.info)
    result = []

    def finish(outcome):
        result.append(outcome)
        reactor.stop()

    def failed(failure):
        sys.stderr.write("demo failed: {}\n".format(failure.getErrorMessage()))
        return 1

    def run():
        d = ensureDeferred(demo(reactor, out))
        d.addTimeout(DEADLINE, reactor)
        d.addErrback(failed)
        d.addBoth(finish)

    reactor.callWhenRunning(run)
    reactor.run()
    return result[0] if result and isinstance(result[0], int) else 1
