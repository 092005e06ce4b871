# -*- test-case-name: tests.unit.test_check -*-
"""
C{uhppoted-tunnel check}: validate a tunnel's configuration without
running it.

Everything C{run} would refuse is refused here with the same one-line
message (the TOML file, the flags, both connector strings, certificate
and key files, a key that does not match its certificate); then the
certificates' dates are checked, and, given the certificate the other half
presents (C{--peer-cert}), that it is signed by C{--ca-cert}, in date, and
(for a client end) names the host dialled. The ends are built on a memory
reactor, so no socket is opened and no file written; the lockfile is not
taken. A socket-activated end (C{systemd:domain=INET:index=0}) is taken
as passed: only systemd can pass it, and only to the service itself.

Exit codes: 0 when all is well (warnings, such as a certificate expiring
within 30 days, are printed); 2 naming the first problem.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from OpenSSL import crypto
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from uhppoted_tunnel.interfaces import IN, OUT
from uhppoted_tunnel.app.spec import connector_plugins
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.addresses import parse_host_port
from uhppoted_tunnel.core.bounded import FileTooLarge, read_bounded

#: A certificate expiring sooner than this is a warning.
EXPIRY_WARNING = datetime.timedelta(days=30)


class CheckFailed(Exception):
    """
    A problem that would stop the tunnel; C{str()} is one line naming it.
    """


class CheckOptions(Options):
    """
    uhppoted-tunnel check [--config FILE#SECTION] [run options] [--peer-cert FILE]
    """

    synopsis = "check [--config FILE#SECTION] [run options] [--peer-cert FILE]"

    longdesc = (
        "Checks the configuration, the connector strings and the TLS certificates as 'run' would, "
        "without opening a socket, and exits 0, or 2 naming the problem."
    )

    optParameters = Options.optParameters + [
        ["peer-cert", None, None, "The certificate the other half presents (a copy of its --cert): checked "
                                  "against --ca-cert, its dates and, for a TLS client, the host dialled."],
    ]


def _tls_ends(options, plugins):
    """
    :return: C{(role, spec, side)} for each end that uses TLS (its plugin
        declares its prefix C{secure}), side C{"client"} for a prefix ending
        C{/client:}, C{"server"} for any other.
    """
    secure = {prefix for plugin in plugins for prefix in plugin.secure}
    for role in (IN, OUT):
        _, parsed = options.ends[role]
        if parsed.prefix in secure:
            yield role, parsed, "client" if parsed.prefix.endswith("/client:") else "server"


def validate_options(options, plugins):
    """
    The checks each connector plugin declares for its options
    (L{uhppoted_tunnel.core.declare.Option.validate}), for the values set.

    :raise CheckFailed: with the first message.
    """
    for plugin in plugins:
        for option in plugin.options:
            if option.validate is not None and options.get(option.name) is not None:
                message = option.validate(options[option.name], options)
                if message:
                    where = options.sources.get(option.name, "--" + option.command_line)
                    raise CheckFailed("{}: {}".format(where, message))


def _read_certificate(path, flag):
    try:
        data, _ = read_bounded(path, "{} '{}'".format(flag, path), what="a PEM file")
    except FileTooLarge as e:
        raise CheckFailed(str(e)) from None
    except OSError as e:
        raise CheckFailed("{} '{}': {}".format(flag, path, e.strerror or e)) from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CheckFailed("{} '{}': not a PEM certificate".format(flag, path)) from None


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _dates(certificate, path, flag, now, notes):
    """
    Refuse a certificate outside its validity period; note one close to
    its end.
    """
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        raise CheckFailed("{} '{}': not valid before {}".format(flag, path, _when(start)))
    if now > end:
        raise CheckFailed("{} '{}': expired on {}".format(flag, path, _when(end)))
    if end - now < EXPIRY_WARNING:
        notes.append("warning: {} '{}' expires on {} ({} days)".format(flag, path, _when(end), (end - now).days))
    else:
        notes.append("{} '{}': valid until {}".format(flag, path, _when(end)))


def _names(certificate):
    """
    :return: the certificate's DNS and IP address SANs, for messages.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return (["DNS:" + name for name in san.get_values_for_type(x509.DNSName)]
            + ["IP:" + str(address) for address in san.get_values_for_type(x509.IPAddress)])


def _covers(certificate, host):
    """
    Whether the certificate names C{host} (a DNS name or an IP address) as
    the tunnel's TLS client checks it (C{service_identity}).
    """
    from service_identity import CertificateError, VerificationError
    from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

    try:
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            verify_certificate_hostname(certificate, host)
        else:
            verify_certificate_ip_address(certificate, address)
    except (VerificationError, CertificateError):
        return False
    return True


def _signed_by(certificate, ca, path, ca_path):
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(ca))
    try:
        crypto.X509StoreContext(store, crypto.X509.from_cryptography(certificate)).verify_certificate()
    except crypto.X509StoreContextError as e:
        raise CheckFailed("--peer-cert '{}': not signed by --ca-cert '{}' ({})".format(
            path, ca_path, e.args[0] if e.args else e)) from None


def _identity_paths(options, side):
    """
    The certificate and key files an end of this side uses, as
    L{uhppoted_tunnel.transports.tls.certs} chooses them, or C{None} for a client with none.
    """
    cert, key = options["cert"], options["key"]
    if side == "server":
        return cert or "server.cert", key or "server.key"
    if cert or key:
        return cert or "client.cert", key or "client.key"
    if os.path.exists("client.cert") and os.path.exists("client.key"):
        return "client.cert", "client.key"
    return None


class _AnySocket:
    """
    Stands in for the sockets systemd passes a socket-activated service
    (Twisted's C{systemd:} endpoint), which C{check} never has: an
    C{ExecStartPre=} command and a shell are not passed them. Any index and
    any name is taken as passed; the endpoint is never listened on.
    """

    class _Any(dict):
        def __getitem__(self, key):
            return -1

        def __contains__(self, key):
            return True

    class _Every(list):
        def __len__(self):
            return 1 << 16

        def __getitem__(self, index):
            return -1

    def inheritedDescriptors(self):
        return self._Every()

    def inheritedNamedDescriptors(self):
        return self._Any()

    @classmethod
    def fromEnvironment(cls, environ=None, start=None):
        return cls()


def _build(options):
    """
    Build both ends as run would (reading every certificate and key and
    matching them), on a memory reactor that opens nothing.
    """
    from twisted.internet.endpoints import _SystemdParser

    from uhppoted_tunnel.app.tunnel import TunnelService

    passed = _SystemdParser._sddaemon
    if not passed.inheritedDescriptors():
        _SystemdParser._sddaemon = _AnySocket()
    try:
        TunnelService(options, MemoryReactorClock())
    finally:
        _SystemdParser._sddaemon = passed


def _check_files(options):
    """
    The files run will write, checked as run checks them
    (L{uhppoted_tunnel.app.options.Options.checkFiles}: an event tunnel's
    spool). Only the default state folder, when it does not exist yet, is
    left alone: run makes it, and check makes nothing.

    :raise CheckFailed: one line naming the setting.
    """
    if options["events"] and getattr(options, "default_spool", False):
        if not os.path.isdir(os.path.dirname(os.path.abspath(options["event-spool"]))):
            return
    try:
        options.checkFiles()
    except ValueError as e:
        raise CheckFailed(str(e)) from None


def _proxy_notes(options):
    """
    Which proxy each client end dials through, and why, as run logs it.
    """
    from uhppoted_tunnel.transports import proxy

    notes = []
    for role in (IN, OUT):
        maker, spec = options.ends[role]
        if spec.prefix.endswith("/client:") and hasattr(maker, "clientEndpoint"):
            note = proxy.describe(spec, options, getattr(maker, "secure", False))
            if note is not None:
                notes.append(note)
    return notes


def check(options, now):
    """
    Check a parsed configuration.

    :param options: parsed L{CheckOptions} (or L{Options}).
    :param now: the current time, an aware C{datetime}.
    :return: lines describing what was checked, warnings included.
    :raise CheckFailed: naming the first problem.
    """
    _check_files(options)
    try:
        _build(options)
    except ValueError as e:
        raise CheckFailed(str(e)) from None
    plugins = connector_plugins()
    validate_options(options, plugins)
    notes = _proxy_notes(options)
    ends = list(_tls_ends(options, plugins))
    peer_path = options.get("peer-cert")
    if peer_path and not ends:
        raise CheckFailed("--peer-cert '{}': neither end uses TLS".format(peer_path))
    if ends:
        ca_path = options["ca-cert"]
        ca = _read_certificate(ca_path, "--ca-cert")
        _dates(ca, ca_path, "--ca-cert", now, notes)
        checked = set()
        for role, spec, side in ends:
            identity = _identity_paths(options, side)
            if identity is not None and identity[0] not in checked:
                checked.add(identity[0])
                _dates(_read_certificate(identity[0], "--cert"), identity[0], "--cert", now, notes)
        if peer_path:
            peer = _read_certificate(peer_path, "--peer-cert")
            _dates(peer, peer_path, "--peer-cert", now, notes)
            _signed_by(peer, ca, peer_path, ca_path)
            for role, spec, side in ends:
                if side != "client":
                    continue
                # a client's address may end in /PATH
                host = parse_host_port(spec.address.split("/", 1)[0])[0]
                if not _covers(peer, host):
                    names = ", ".join(_names(peer)) or "no subject alternative names"
                    raise CheckFailed("--peer-cert '{}' does not name '{}', the host {} dials (it names {})".format(
                        peer_path, host, spec.text, names))
                notes.append("--peer-cert '{}' names '{}'".format(peer_path, host))
    return notes


def main(argv, stdout, stderr, now=None):
    """
    The C{check} command.

    :param argv: the arguments after C{check}.
    :param now: the current time; the clock's when C{None}.
    :return: the exit code.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    options = CheckOptions()
    try:
        options.parseOptions(argv)
        notes = check(options, now)
    except (usage.UsageError, CheckFailed) as e:
        stderr.write("uhppoted-tunnel: {}\n".format(e))
        return 2
    for note in notes:
        stdout.write(note + "\n")
    stdout.write("configuration OK: {} -> {}\n".format(options["in"], options["out"]))
    return 0
