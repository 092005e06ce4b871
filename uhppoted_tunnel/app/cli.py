# -*- test-case-name: tests.loopback.test_integration -*-
"""
The C{uhppoted-tunnel} command.

::

    uhppoted-tunnel [run] --in CONNECTOR --out CONNECTOR [options]
    uhppoted-tunnel check [--config FILE#SECTION] [options]
    uhppoted-tunnel daemonize | undaemonize [--label LABEL] ...
    uhppoted-tunnel emulator [--bind HOST:PORT] [--controller SERIAL] ...
    uhppoted-tunnel sample toml | tac | man | unit NAME | list
    uhppoted-tunnel help | version | demo

Exit codes: 0 after a clean stop (SIGTERM, SIGINT); 1 when the tunnel
stops on an error it cannot get past (a port in use, a client out of
retries); 2 for a configuration error, reported in one line before
anything listens.
"""

import os
import select
import sys

from twisted.logger import Logger
from twisted.python import usage
from twisted.python.reflect import namedModule

from uhppoted_tunnel import __version__
from uhppoted_tunnel.app.launch import build, reload_on_hangup, stop_reactor
from uhppoted_tunnel.app.lockfile import LockfileError
from uhppoted_tunnel.app.logging import parse_level, start_logging
from uhppoted_tunnel.app.helptext import HELP, VERSION, command_help, flag_hint
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.hints import did_you_mean
from uhppoted_tunnel.observe.sdnotify import notify_service

log = Logger(namespace="uhppoted_tunnel")

USAGE = """\
Usage: uhppoted-tunnel [run] --in CONNECTOR --out CONNECTOR [options]
       uhppoted-tunnel check [--config FILE#SECTION] [options] [--peer-cert FILE]
       uhppoted-tunnel daemonize [--label LABEL] [--user USER] --config FILE#SECTION [options]
       uhppoted-tunnel undaemonize [--label LABEL]
       uhppoted-tunnel emulator [--bind HOST:PORT] [--controller SERIAL] [options]
       uhppoted-tunnel sample toml | tac | man | unit NAME | list
       uhppoted-tunnel help | version | demo

  run       relay between the --in and --out connectors (the default)
  check     check the configuration, connectors and certificates as run
            would, without opening a socket; exit 0, or 2 naming the problem
  daemonize write a hardened systemd unit running this tunnel (--unit-dir
            DIR writes it elsewhere; 'daemonize --help' for the rest)
  undaemonize
            stop, disable and remove that unit
  demo      run a host half, a site half and an emulated controller on
            loopback and print what the tunnel relays
  emulator  emulate UHPPOTE controllers on a UDP port, to try a tunnel
            without hardware ('emulator --help' for the rest)
  sample    print a shipped file: the sample TOML file, the .tac file,
            the man page or a systemd unit ('sample help' for the list)
  version   print the version (also -version, --version)
  help      print this help (also -h, -help, --help); 'help COMMAND' prints
            that command's help
"""

#: The commands, for "did you mean".
COMMANDS = ("run", "check", "daemonize", "undaemonize", "demo", "emulator", "sample", "version", "help")


def _go_flags(argv, options=Options):
    """
    Accept Go's single-dash long flags (C{-in X}, C{-udp-timeout=1s}).

    :param options: the L{usage.Options} class whose flags are converted.
    """
    names = {name for flag in options.optFlags + options.optParameters for name in flag[:1]}
    converted = []
    for arg in argv:
        name = arg[1:].split("=", 1)[0]
        # an unknown -word too, so that its error names it (with a hint)
        # rather than its first letter
        if arg.startswith("-") and not arg.startswith("--") and (name in names or name[:2].isalpha()):
            arg = "-" + arg
        converted.append(arg)
    return converted


def reactor_installer(options):
    """
    :return: the module whose C{install()} installs the reactor every
        tunnel runs best under: the tunnel's own epoll reactor
        (L{uhppoted_tunnel.link.reactor.TurnEndReactor}) where there is
        epoll; C{None} elsewhere (the platform's default).
    """
    if hasattr(select, "epoll"):
        return "uhppoted_tunnel.link.reactor"
    return None


def install_reactor(options):
    """
    Install the L{reactor_installer}'s reactor, unless a reactor is
    installed already (the caller's choice); else the platform's default
    is installed when first imported.
    """
    installer = reactor_installer(options)
    if installer is not None and "twisted.internet.reactor" not in sys.modules:
        namedModule(installer).install()


def parse(argv):
    """
    Parse the command line.

    :param argv: the arguments after the program name.
    :return: parsed L{Options}.
    :raise usage.UsageError: naming the bad flag or file, section and key.
    """
    options = Options()
    try:
        options.parseOptions(_go_flags(argv))
    except usage.UsageError as e:
        raise usage.UsageError(flag_hint(e, options)) from None
    return options


def run(options, reactor):
    """
    Run a tunnel until it is stopped.

    :return: the exit code.
    """
    start_logging(parse_level(options["log-level"]), log_format=options["log-format"])
    for warning in options.warnings:
        log.warn("{warning}", warning=warning, log_tag="CONFIG")
    try:
        service = build(options, reactor)
    except (ValueError, LockfileError) as e:
        sys.stderr.write("uhppoted-tunnel: {}\n".format(e))
        return 2
    # under systemd (Type=notify): READY=1, STATUS=, STOPPING=1, WATCHDOG=1
    notify_service(service, reactor)

    service.on_failure = lambda message: stop_reactor(reactor)
    reload_on_hangup(service, reactor)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 1 if service.failure is not None else 0


def main(argv=None, reactor=None):
    """
    The console script.

    :param argv: the arguments after the program name; C{sys.argv[1:]}
        when C{None}.
    :return: the exit code.
    """
    try:
        return _main(argv, reactor)
    except BrokenPipeError:
        # the reader went away (--help | head -1): no traceback, and no
        # second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _help(argv):
    """
    C{help} and C{help COMMAND}.
    """
    if len(argv) < 2:
        sys.stdout.write(USAGE + "\n" + str(Options()))
        return 0
    if argv[1] in ("emulator", "sample"):
        # their own help: 'emulator --help', 'sample help'
        try:
            return _main([argv[1], "--help" if argv[1] == "emulator" else "help"], None)
        except SystemExit as e:
            return e.code or 0
    from uhppoted_tunnel.app.check import CheckOptions
    from uhppoted_tunnel.app.daemonize import DaemonizeOptions, UndaemonizeOptions

    text = command_help(argv[1], {"run": Options, "check": CheckOptions, "daemonize": DaemonizeOptions,
                                  "undaemonize": UndaemonizeOptions})
    if text is None:
        sys.stderr.write("uhppoted-tunnel: no command '{}'{} (see 'uhppoted-tunnel help')\n".format(
            argv[1], did_you_mean(argv[1], COMMANDS)))
        return 2
    sys.stdout.write(text)
    return 0


def _main(argv, reactor):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and (argv[0] in HELP + VERSION or not argv[0].startswith("-")) else "run"
    if command in HELP:
        return _help(argv)
    if command in VERSION:
        sys.stdout.write("uhppoted-tunnel {}\n".format(__version__))
        return 0
    if command == "check":
        from uhppoted_tunnel.app.check import main as check

        return check(_go_flags(argv[1:]), sys.stdout, sys.stderr)
    if command in ("daemonize", "undaemonize"):
        from uhppoted_tunnel.app import daemonize

        flags = daemonize.DaemonizeOptions if command == "daemonize" else daemonize.UndaemonizeOptions
        return daemonize.main(command, _go_flags(argv[1:], flags), sys.stdout, sys.stderr)
    if command == "sample":
        from uhppoted_tunnel.app.sample import main as sample

        return sample(argv[1:], sys.stdout, sys.stderr)
    if command == "emulator":
        from uhppoted_tunnel.emulator.__main__ import main as emulator

        return emulator(argv[1:])
    if command == "demo":
        from uhppoted_tunnel.app.demo import main as demo

        if reactor is None:
            from twisted.internet import reactor
        return demo(argv[1:], reactor)
    try:
        options = parse(argv)
    except usage.UsageError as e:
        sys.stderr.write("uhppoted-tunnel: {} (see 'uhppoted-tunnel help')\n".format(e))
        return 2
    if reactor is None:
        install_reactor(options)
        from twisted.internet import reactor
    return run(options, reactor)


if __name__ == "__main__":
    sys.exit(main())
