# -*- test-case-name: tests.loopback.test_reload -*-
"""
Certificate reload without a restart: after the certificate files are
swapped and the tunnel gets SIGHUP, the next TLS connection is served with
the new certificate while the one already made carries on; a bad new file
is a warning and the certificate in use stays.
"""

import os
import shutil
import socket
import ssl

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import (
    Client,
    listening_line,
    run_tunnel,
    start_emulator,
    workdir,
)

A = 405419896


def served_certificate(port, ca):
    """
    Dial a TLS server on 127.0.0.1 trusting C{ca}, and return the
    certificate it presents (DER).
    """
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class ReloadTests(TestCase):
    timeout = 90

    def install(self, files, live):
        for role, name in (("ca", "ca"), ("server", "server")):
            cert, key = files[role]
            shutil.copy(cert, os.path.join(live, name + ".cert"))
            shutil.copy(key, os.path.join(live, name + ".key"))

    @inlineCallbacks
    def test_sighup(self):
        """
        SIGHUP after swapping the host's certificate files: the next
        connection gets the new certificate, the site connected before
        carries on relaying, and a bad file later is a warning that keeps
        the new certificate in use.
        """
        folder = workdir(self)
        old = certs.make(os.path.join(folder, "old"))
        new = certs.make(os.path.join(folder, "new"), prefix="new-")
        live = os.path.join(folder, "live")
        os.makedirs(live)
        self.install(old, live)
        _, emulator_port = yield start_emulator(self, A)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tls/server:127.0.0.1:0",
                          "--ca-cert", os.path.join(live, "ca.cert"), "--cert", os.path.join(live, "server.cert"),
                          "--key", os.path.join(live, "server.key"))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tls_port = int((yield host.waitFor(r"TLS\s+listening on 127\.0\.0\.1:(\d+)")).group(1))
        site = run_tunnel(self, "site", "--in", "tls/client:127.0.0.1:{}".format(tls_port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s",
                          "--ca-cert", old["ca"][0])
        yield site.waitFor(r"TLS\s+connected to 127\.0\.0\.1:{}".format(tls_port))
        served = yield deferToThread(served_certificate, tls_port, old["ca"][0])
        self.assertEqual(served, der(old["server"][0]))

        self.install(new, live)
        mark = site.mark()
        host.send_signal("HUP")
        yield host.waitFor(r"reloaded the TLS certificates")
        served = yield deferToThread(served_certificate, tls_port, new["ca"][0])
        self.assertEqual(served, der(new["server"][0]))
        reply = yield Client(udp_port).get_controller(A, timeout=3.0)
        self.assertEqual(reply.controller, A)
        self.assertEqual([text for _, text in site.lines[mark:] if "closed" in text], [])

        with open(os.path.join(live, "server.cert"), "w") as f:
            f.write("not a certificate\n")
        host.send_signal("HUP")
        yield host.waitFor(r"could not reload the TLS certificates .*: keeping those in use")
        served = yield deferToThread(served_certificate, tls_port, new["ca"][0])
        self.assertEqual(served, der(new["server"][0]))
        self.assertNotIn("Traceback", host.output())
