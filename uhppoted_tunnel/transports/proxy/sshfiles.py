# -*- test-case-name: tests.unit.test_sshproxy -*-
"""
The files an C{ssh://} proxy reads, each read whole but bounded
(L{MAX_FILE}): the private key it logs in with (C{--ssh-identity}, with
C{--ssh-passphrase-file}) and the server keys it trusts
(C{--ssh-known-hosts}, OpenSSH's format, hashed entries and
C{[HOST]:PORT} included).

L{load_identity} and L{KnownHosts} raise C{ValueError} with one line an
operator can act on; L{identity_mode_warning} says when others can read a
key. No trust on first use: a server whose key is not listed is refused
(L{KnownHosts.verify}).
"""

import base64
import hashlib
import os

from twisted.conch.client.knownhosts import HashedEntry, PlainEntry
from twisted.conch.ssh.keys import BadKeyError, EncryptedKeyError, Key

#: The largest file read (a key, a passphrase, a known_hosts file).
MAX_FILE = 1024 * 1024

#: The key types an identity may be.
KEY_TYPES = {"Ed25519": "ed25519", "EC": "ecdsa", "RSA": "rsa"}


def default_known_hosts(environ):
    """
    OpenSSH's own list: C{~/.ssh/known_hosts}.
    """
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".ssh", "known_hosts")


def read_bounded(path, flag, limit=MAX_FILE):
    """
    A file's bytes, at most C{limit} of them.

    :param flag: the option that named it, for the message.
    :raise ValueError: when it cannot be read, or is larger.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ValueError("{} '{}': {}".format(flag, path, e.strerror or e)) from None
    if len(data) > limit:
        raise ValueError("{} '{}': larger than {} bytes: is it the right file?".format(flag, path, limit))
    return data


def fingerprint(key):
    """
    A key as C{ssh-keygen -l} shows it: C{SHA256:...}, unpadded base64.
    """
    digest = hashlib.sha256(key.blob()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def describe_key(key):
    """
    C{TYPE SHA256:...}, as a log line names a key.
    """
    # the key's own type (an RSA key logging in as rsa-sha2-256 is ssh-rsa)
    return "{} {}".format(Key.sshType(key).decode("ascii"), fingerprint(key))


def load_identity(path, passphrase_path=None):
    """
    The private key to log in with: an OpenSSH (or PEM) ed25519, ecdsa or
    RSA key, decrypted with the first line of C{passphrase_path}.

    :raise ValueError: naming the file and the problem.
    """
    data = read_bounded(path, "--ssh-identity")
    passphrase = None
    if passphrase_path is not None:
        passphrase = read_bounded(passphrase_path, "--ssh-passphrase-file").splitlines()
        passphrase = passphrase[0] if passphrase else b""
    try:
        key = Key.fromString(data, passphrase=passphrase)
    except EncryptedKeyError:
        if passphrase is None:
            raise ValueError("--ssh-identity '{}' is encrypted: give its passphrase with "
                             "--ssh-passphrase-file".format(path)) from None
        raise ValueError("--ssh-identity '{}': the passphrase (--ssh-passphrase-file) does not decrypt "
                         "it".format(path)) from None
    except (BadKeyError, ValueError, TypeError, IndexError) as e:
        if passphrase is not None and _encrypted(data):
            raise ValueError("--ssh-identity '{}': the passphrase (--ssh-passphrase-file) does not decrypt "
                             "it".format(path)) from None
        raise ValueError("--ssh-identity '{}': not an OpenSSH private key ({})".format(path, e)) from None
    if key.isPublic():
        raise ValueError("--ssh-identity '{}' is a public key: give the private key".format(path))
    if key.type() not in KEY_TYPES:
        raise ValueError("--ssh-identity '{}': a {} key (expected ed25519, ecdsa or rsa)".format(path, key.type()))
    return key


def _encrypted(data):
    """
    Whether a key file is an encrypted key (conch reads a wrong
    passphrase as a bad key).
    """
    try:
        Key.fromString(data)
    except EncryptedKeyError:
        return True
    except Exception:
        return False
    return False


class HostKeyRefused(Exception):
    """
    The server's key is not one C{known_hosts} lists for it; C{str()} is
    the log line.
    """


class KnownHosts:
    """
    The server keys trusted, read from an OpenSSH C{known_hosts} file
    each time a server is verified (so an edit needs no restart).

    Plain and hashed (C{|1|}) entries, names in the C{[HOST]:PORT} form
    for ports other than 22, and C{@revoked} keys; lines that are not
    entries (C{@cert-authority}, wildcards) are skipped.
    """

    def __init__(self, path, flag="--ssh-known-hosts"):
        self.path = path
        self.flag = flag

    def entries(self):
        """
        :return: C{(revoked, entry)} for each entry of the file.
        :raise ValueError: when the file cannot be read.
        """
        result = []
        for line in read_bounded(self.path, self.flag).splitlines():
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            revoked = line.startswith(b"@revoked ")
            if revoked:
                line = line[len(b"@revoked "):].lstrip()
            elif line.startswith(b"@"):
                continue
            try:
                entry = (HashedEntry if line.startswith(HashedEntry.MAGIC) else PlainEntry).fromString(line)
            except Exception:
                # as OpenSSH does, a line it cannot read is skipped
                continue
            result.append((revoked, entry))
        return result

    def verifiable(self):
        """
        The test at start and in C{uhppoted-tunnel check}: the file reads
        and lists a key.

        :raise ValueError: naming the file and the problem.
        """
        if not self.entries():
            raise ValueError("{} '{}' lists no host keys: add the server's with ssh-keyscan".format(
                self.flag, self.path))

    def verify(self, name, key):
        """
        Whether C{key} is trusted for C{name}.

        :param name: C{HOST}, or C{[HOST]:PORT} (L{SSHProxy.known_host}).
        :param key: the public L{Key} the server offered.
        :raise HostKeyRefused: when it is not listed, listed as revoked,
            or another key of its type is listed for C{name}.
        :raise ValueError: when the file cannot be read.
        """
        entries = self.entries()
        offered = describe_key(key)
        for revoked, entry in entries:
            if revoked and entry.matchesKey(key):
                raise HostKeyRefused("{} offered a revoked host key {} ({} '{}')".format(
                    name, offered, self.flag, self.path))
        other = False
        for revoked, entry in entries:
            if revoked or not entry.matchesHost(name.encode("utf-8")):
                continue
            if entry.matchesKey(key):
                return
            other = other or entry.keyType == key.sshType()
        if other:
            raise HostKeyRefused("{} offered host key {}, not the key {} '{}' lists for it: the key changed "
                                 "(a new server, or someone in the middle); check it, then update the "
                                 "file".format(name, offered, self.flag, self.path))
        raise HostKeyRefused("{} offered host key {}, which {} '{}' does not list: add it (ssh-keyscan), "
                             "after checking its fingerprint".format(name, offered, self.flag, self.path))
