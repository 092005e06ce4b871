"""
Every file the tunnel is given is read bounded (issue 25, item 6):
L{uhppoted_tunnel.core.bounded} and each reader that uses it, given
C{/dev/zero} or a file over its limit.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import config
from uhppoted_tunnel.core.bounded import MAX_FILE, FileTooLarge, read_bounded
from uhppoted_tunnel.transports.tls import certs
from uhppoted_tunnel.transports.ws.maker import read_token
from uhppoted_tunnel.transports.xmpp.maker import read_password
from uhppoted_tunnel.transports.zmq import curve

ZERO = "/dev/zero"


class BoundedTests(SynchronousTestCase):
    def assertOneLine(self, error, *parts):
        message = str(error)
        self.assertNotIn("\n", message)
        for part in parts:
            self.assertIn(part, message)

    def test_limit(self):
        """
        A file up to the limit is read whole, with its mode; one byte more
        is L{FileTooLarge}, one line naming it.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        self.assertEqual(read_bounded(path, "--x", 10)[0], b"x" * 10)
        error = self.assertRaises(FileTooLarge, read_bounded, path, "--x 'f'", 9, "a key file")
        self.assertEqual(str(error), "--x 'f': over 9 bytes (is it a key file?)")

    def test_devZero(self):
        """
        C{/dev/zero} costs at most the limit and is refused.
        """
        self.assertRaises(FileTooLarge, read_bounded, ZERO, ZERO)

    def test_certificates(self):
        """
        C{--cert}, C{--key} and C{--ca-cert} (and the expiry check's read)
        refuse C{/dev/zero} in one line naming the flag.
        """
        for flag in ("--cert", "--key", "--ca-cert"):
            error = self.assertRaises(ValueError, certs.read_file, ZERO, flag)
            self.assertOneLine(error, "{} '/dev/zero'".format(flag), "over {} bytes".format(MAX_FILE))
        self.assertOneLine(self.assertRaises(ValueError, certs.load_ca, ZERO), "--ca-cert", "over")
        self.assertOneLine(self.assertRaises(ValueError, certs.not_after, ZERO), "/dev/zero", "over")

    def test_zmqKeys(self):
        """
        The zmq key files, and the authorised keys' folder, are bounded.
        """
        for flag in ("--zmq-server-key", "--zmq-client-key"):
            error = self.assertRaises(ValueError, curve.read_key, ZERO, flag, True)
            self.assertOneLine(error, flag + " /dev/zero: over {} bytes".format(curve.MAX_KEY_FILE))
        folder = self.mktemp()
        os.makedirs(folder)
        os.symlink(ZERO, os.path.join(folder, "client.key"))
        error = self.assertRaises(ValueError, curve.read_authorized, folder)
        self.assertOneLine(error, "--zmq-authorized-keys", "over")

    def test_tokenAndPassword(self):
        """
        The token and password files are bounded through the same reader.
        """
        self.assertOneLine(self.assertRaises(ValueError, read_token, ZERO), "--token-file '/dev/zero': over")
        self.assertOneLine(self.assertRaises(ValueError, read_password, ZERO),
                           "--xmpp-password-file '/dev/zero': over")

    def test_config(self):
        """
        The configuration file uses the same reader.
        """
        error = self.assertRaises(config.ConfigError, config.load, ZERO, None, explicit=True)
        self.assertOneLine(error, "/dev/zero: over 1048576 bytes (is it a configuration file?)")
