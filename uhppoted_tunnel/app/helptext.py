# -*- test-case-name: tests.unit.test_hints -*-
"""
The help a command prints, and hints for a mistyped flag: Go's
single-dash spellings (C{-h}, C{-help}, C{-version}), C{help COMMAND},
and "did you mean" for an unknown flag.
"""

import re

from twisted.python import usage

from uhppoted_tunnel.core.hints import did_you_mean

#: The spellings of C{help} (Go's flag package answers C{-h} and C{-help}).
HELP = ("help", "-h", "-help", "--help")

#: The spellings of C{version}.
VERSION = ("version", "-version", "--version")

#: Commands whose help is their options' usage; the others have one line.
SUMMARIES = {
    "demo": "Usage: uhppoted-tunnel demo\n\nRuns a host half, a site half and an emulated controller on loopback "
            "and prints what the tunnel relays; exits 0 if every controller answered.\n",
    "version": "Usage: uhppoted-tunnel version (or -version, --version)\n\nPrints the version.\n",
    "help": "Usage: uhppoted-tunnel help [COMMAND]\n\nPrints the help, or a command's help.\n",
}

_UNRECOGNIZED = re.compile(r"^option (-{1,2})([^\s=]+) not recognized$")


def command_help(command, options):
    """
    The help of one command.

    :param command: its name (C{run}, C{check}, ...).
    :param options: C{{command: usage.Options class}} for the commands
        whose help is their options' usage.
    :return: the text, or C{None} for an unknown command.
    """
    if command in options:
        return str(options[command]())
    return SUMMARIES.get(command)


def flag_hint(error, options):
    """
    A usage error about an unknown flag, with the closest known flag.

    :param error: the L{usage.UsageError}.
    :param options: the parsed L{usage.Options} instance, whose C{longOpt}
        lists its flags.
    :return: the message, with C{" (did you mean --udp-timeout?)"} when a
        flag is close.
    """
    message = str(error)
    match = _UNRECOGNIZED.match(message)
    if match is None or not isinstance(error, usage.UsageError):
        return message
    names = [name.rstrip("=") for name in options.longOpt]
    return message + did_you_mean(match.group(2), names, "--{}")
