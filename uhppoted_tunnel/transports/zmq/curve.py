# -*- test-case-name: tests.unit.test_zmq -*-
"""
The CURVE keys of the C{zmq/} ends: the key files
(C{zmq.auth.create_certificates} writes them) that C{--zmq-server-key},
C{--zmq-client-key} and C{--zmq-authorized-keys} name, read and checked
into what each end's sockets are given.
"""

import os

import zmq
from zmq.auth.certs import load_certificate, load_certificates

from uhppoted_tunnel.core.bounded import FileTooLarge, read_bounded

#: The most read from a key file (one holds about 300 bytes).
MAX_KEY_FILE = 64 * 1024


def read_key(path, flag, secret):
    """
    Read a CURVE key file as C{zmq.auth.create_certificates} writes them
    (C{NAME.key} holds the public key, C{NAME.key_secret} both).

    :param path: the file.
    :param flag: the flag that named it, for the message.
    :param secret: whether the secret key is needed.
    :return: C{(public, secret)}, Z85 bytes (C{secret} C{None} if not
        needed).
    :raise ValueError: one line naming the flag and the file.
    """
    try:
        # bounded first: zmq's reader reads a whole file (/dev/zero too)
        read_bounded(path, "{} {}".format(flag, path), MAX_KEY_FILE, "a CURVE key file")
        public, secret_key = load_certificate(path)
    except FileTooLarge:
        raise
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if not os.path.exists(path):
            reason = "no such file"
        raise ValueError("{} {}: {}".format(flag, path, reason)) from None
    if secret and not secret_key:
        raise ValueError("{} {}: no secret key in the file (give the .key_secret file)".format(flag, path))
    for key in (public, secret_key if secret else None):
        if key is not None and len(key) != 40:
            raise ValueError("{} {}: not a CURVE key (expected 40 Z85 characters)".format(flag, path))
    return public, secret_key if secret else None


def read_authorized(directory, flag="--zmq-authorized-keys"):
    """
    Read a folder of authorised client public keys (C{*.key}).

    :return: a dict of Z85 public key to C{True}, as the Authenticator
        keeps them.
    :raise ValueError: one line naming the flag and the folder.
    """
    if not os.path.isdir(directory):
        raise ValueError("{} {}: not a folder".format(flag, directory))
    try:
        for name in sorted(os.listdir(directory)):
            if name.endswith(".key"):
                path = os.path.join(directory, name)
                read_bounded(path, "{} {}".format(flag, path), MAX_KEY_FILE, "a CURVE key file")
        keys = load_certificates(directory)
    except FileTooLarge as e:
        raise ValueError(str(e)) from None
    except (OSError, ValueError) as e:
        raise ValueError("{} {}: {}".format(flag, directory, e)) from None
    if not keys:
        raise ValueError("{} {}: no client public keys (*.key files) in the folder".format(flag, directory))
    return keys


def server_keys(settings):
    """
    :return: C{(curve, authorized)} for a server end: its own keys (or
        C{None}) and the authorised client keys (or C{None}).
    :raise ValueError: one line naming the flag.
    """
    path = settings.get("zmq-server-key")
    authorized = settings.get("zmq-authorized-keys")
    if path is None:
        if authorized is not None:
            raise ValueError("--zmq-authorized-keys needs --zmq-server-key (the server's .key_secret file)")
        return None, None
    curve = read_key(path, "--zmq-server-key", secret=True)
    return curve, None if authorized is None else read_authorized(authorized)


def client_keys(settings):
    """
    :return: C{(server_public, client_public, client_secret)} for a
        client end, or C{None}. Without C{--zmq-client-key} the client
        makes a key pair for the run (encrypted, but refused by a server
        with C{--zmq-authorized-keys}).
    :raise ValueError: one line naming the flag.
    """
    path = settings.get("zmq-server-key")
    client = settings.get("zmq-client-key")
    if path is None:
        if client is not None:
            raise ValueError("--zmq-client-key needs --zmq-server-key (the server's public .key file)")
        return None
    server, _ = read_key(path, "--zmq-server-key", secret=False)
    public, secret = read_key(client, "--zmq-client-key", secret=True) if client else zmq.curve_keypair()
    return server, public, secret
