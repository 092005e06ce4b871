# -*- test-case-name: tests.unit.test_options,tests.unit.test_sshproxy -*-
"""
The options of the stream client ends (tcp/, tls/, and the transports that
dial through L{uhppoted_tunnel.transports.proxy}): the proxy they dial
through, and for an C{ssh://} proxy the files it logs in and verifies the
server with. Light: the proxy modules are imported only to check a value
given.
"""

from uhppoted_tunnel.core.declare import Option


def proxy_value(value):
    """
    The C{proxy} converter: the text, once L{uhppoted_tunnel.transports.proxy}
    parses it.
    """
    from uhppoted_tunnel.transports.proxy import check_proxy

    return check_proxy(value)


def _problem(flag, check, *args):
    """
    :return: the message of the C{ValueError} C{check(*args)} raises
        (less the C{flag} it starts with: C{check} names where the value
        came from), or C{None}.
    """
    try:
        check(*args)
    except ValueError as e:
        message = str(e)
        return message[len(flag) + 1:] if message.startswith(flag + " ") else message
    return None


def validate_identity(value, settings):
    """
    C{check}: the identity reads and decrypts as a private key.
    """
    from uhppoted_tunnel.transports.proxy.sshfiles import load_identity

    return _problem("--ssh-identity", load_identity, value, settings.get("ssh-passphrase-file"))


def validate_passphrase(value, settings):
    """
    C{check}: the passphrase file is readable (and goes with an identity).
    """
    from uhppoted_tunnel.transports.proxy.sshfiles import read_bounded

    if not settings.get("ssh-identity"):
        return "a passphrase file without --ssh-identity: give the key it decrypts"
    return _problem("--ssh-passphrase-file", read_bounded, value, "--ssh-passphrase-file")


def validate_known_hosts(value, settings):
    """
    C{check}: the known-hosts file reads and lists keys.
    """
    from uhppoted_tunnel.transports.proxy.sshfiles import KnownHosts

    return _problem("--ssh-known-hosts", KnownHosts(value).verifiable)


OPTIONS = (
    Option("proxy", "Client ends (tcp/client, tls/client, ws/, wss/) dial HOST:PORT through this proxy: "
                    "http://[USER:PASS@]HOST[:PORT] (CONNECT; port 1080 if none), or "
                    "ssh://USER@HOST[:PORT] (an SSH server's port forwarding; port 22 if none); 'none' ignores "
                    "the proxy environment variables (default: https_proxy/HTTPS_PROXY for tls/, "
                    "http_proxy for tcp/, then all_proxy/ALL_PROXY, less no_proxy/NO_PROXY, as curl).",
           convert=proxy_value),
    Option("ssh-identity", "The OpenSSH private key (ed25519, ecdsa or rsa) an ssh:// proxy logs in with "
                           "(default: ssh-agent's keys, through SSH_AUTH_SOCK).", validate=validate_identity),
    Option("ssh-passphrase-file", "A file whose first line is the --ssh-identity key's passphrase.",
           validate=validate_passphrase),
    Option("ssh-known-hosts", "The OpenSSH known_hosts file listing the ssh:// proxy's host key (hashed "
                              "entries and [HOST]:PORT included; never trusted on first use) "
                              "(default: ~/.ssh/known_hosts).", validate=validate_known_hosts),
)
