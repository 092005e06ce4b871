# -*- test-case-name: tests.loopback.test_nats_jwt -*-
"""
NATS's decentralised (JWT) authentication for the nats/ ends' loopback
tests: an operator, its account and the account's users minted here with
the C{nkeys} library, as NATS's own tools (C{nsc}) make them, and a
nats-server in operator mode that knows the account from a memory
resolver.

A JWT is the nats-io/jwt v2 one: C{HEADER.PAYLOAD.SIGNATURE}, each part
base64url without padding; the header is
C{{"typ":"JWT","alg":"ed25519-nkey"}}; the payload holds the claims
(C{jti}, C{iat}, C{iss} the issuer's public key, C{sub} the subject's,
C{exp} if it expires, and C{nats} with the claim's C{type} and
C{version} 2); the signature is the issuer's nkey's over
C{HEADER.PAYLOAD}. The operator signs itself and the account, the account
its users. A user's C{.creds} file holds its JWT and its seed.
"""

import base64
import hashlib
import json
import os
import time

import nkeys
from twisted.internet.defer import inlineCallbacks

from tests.loopback.natscluster import healthy
from tests.loopback.processes import LOOPBACK, free_port, spawn
from tests.tools import require

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}

#: the unlimited limits of an account (C{-1}: no limit)
UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1}


def _b64(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _json(value):
    return json.dumps(value, separators=(",", ":")).encode()


class Key:
    """
    A new nkey pair of one kind (operator, account or user).
    """

    def __init__(self, prefix):
        self.seed = nkeys.encode_seed(os.urandom(32), prefix)
        self.pair = nkeys.from_seed(bytearray(self.seed))
        self.public = self.pair.public_key.decode()

    def sign(self, data):
        return self.pair.sign(data)


def operator_key():
    return Key(nkeys.PREFIX_BYTE_OPERATOR)


def account_key():
    return Key(nkeys.PREFIX_BYTE_ACCOUNT)


def user_key():
    return Key(nkeys.PREFIX_BYTE_USER)


def encode(claims, issuer):
    """
    A JWT of C{claims}, signed by the C{issuer} L{Key} (which becomes
    C{iss}); C{jti} is the hash of the claims, as the Go library makes it.
    """
    claims = dict(claims, iss=issuer.public, iat=int(time.time()), jti="")
    claims["jti"] = base64.b32encode(hashlib.new("sha512_256", _json(claims)).digest()).decode().rstrip("=")
    head = _b64(_json(HEADER)) + "." + _b64(_json(claims))
    return head + "." + _b64(issuer.sign(head.encode()))


def operator_jwt(operator):
    return encode({"sub": operator.public, "name": "uhtest", "nats": {"type": "operator", "version": 2}}, operator)


def account_jwt(account, operator):
    return encode({"sub": account.public, "name": "tunnel",
                   "nats": {"limits": UNLIMITED, "default_permissions": {"pub": {}, "sub": {}},
                            "type": "account", "version": 2}}, operator)


def user_jwt(user, account, expires=None):
    """
    :param expires: the Unix time the JWT expires at, or C{None}.
    """
    claims = {"sub": user.public, "name": "site",
              "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}}
    if expires is not None:
        claims["exp"] = int(expires)
    return encode(claims, account)


def write_creds(path, jwt, user):
    """
    Write a user's C{.creds} file (mode 0600), as C{nsc generate creds}
    does.
    """
    text = ("-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n").format(
                jwt=jwt, seed=user.seed.decode())
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


class Operator:
    """
    An operator with one account, a nats-server in operator mode that
    trusts them (one node, no JetStream), and C{.creds} files for users of
    that account or of another.
    """

    name = "nats-jwt"

    def __init__(self, root):
        self.root = root
        self.process = None
        self.operator = operator_key()
        self.account = account_key()
        self.port = free_port()
        self.monitor = free_port()
        self.jwt = os.path.join(root, "operator.jwt")
        with open(self.jwt, "w") as f:
            f.write(operator_jwt(self.operator))
        self.config = os.path.join(root, "operator.conf")
        with open(self.config, "w") as f:
            f.write("server_name: jwt\nlisten: {host}:{port}\nhttp: {host}:{monitor}\noperator: \"{jwt}\"\n"
                    "resolver: MEMORY\nresolver_preload: {{ {account}: \"{account_jwt}\" }}\n".format(
                        host=LOOPBACK, port=self.port, monitor=self.monitor, jwt=self.jwt,
                        account=self.account.public, account_jwt=account_jwt(self.account, self.operator)))

    @property
    def address(self):
        return "{}:{}".format(LOOPBACK, self.port)

    @inlineCallbacks
    def start(self, testcase):
        """
        Run the server (killed in the test's cleanup) until it is healthy.
        """
        server = require("nats-server", "nats-server")
        self.process = spawn(testcase, [server, "-c", self.config], self.name)
        yield healthy(self)

    def creds(self, name, account=None, expires=None):
        """
        A user's C{.creds} file, the user's JWT signed by this operator's
        account or by C{account} (a L{Key} the server does not know).
        """
        user = user_key()
        return write_creds(os.path.join(self.root, name + ".creds"),
                           user_jwt(user, account or self.account, expires), user)
