# -*- test-case-name: tests.loopback.test_tls -*-
"""
Real components for the loopback tests (openssl, curl, chromium, haproxy,
tinyproxy, prosody, systemd's tools, testssl.sh).

A test that needs one calls L{require}: on a machine without it the test is
skipped with a message naming the Debian package that provides it, so the
README's test command still passes there; under CI (C{CI=true}), where
C{.ci/run} installs every one of them, a missing component fails the test
instead.
"""

import os
import shutil

from twisted.trial.unittest import SkipTest


def under_ci():
    """
    Whether the tests run under CI, where every optional component must be
    present.
    """
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(command, package):
    """
    The path of a command a test needs.

    :param command: the command's name (looked up on C{PATH}, then in
        C{/usr/sbin} and C{/sbin}) or an absolute path.
    :param package: the Debian package that provides it, named in the skip
        message.
    :return: the command's path.
    :raise SkipTest: when it is missing and the tests do not run under CI.
    :raise AssertionError: when it is missing under CI.
    """
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin:/usr/local/sbin")
    if path is not None:
        return path
    message = "{} is not installed (Debian package {})".format(command, package)
    if under_ci():
        raise AssertionError(message + ": .ci/run should have installed it")
    raise SkipTest(message)
