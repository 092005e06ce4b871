# -*- test-case-name: tests.loopback.test_proxy,tests.loopback.test_grpc,tests.loopback.test_xmpp -*-
"""
tinyproxy for the tests that dial through a real HTTP proxy: Debian's
C{tinyproxy}, started by each test on 127.0.0.1 with its own configuration
in the test's folder.
"""

import grp
import os
import pwd

from twisted.internet.defer import inlineCallbacks

from tests.loopback.processes import WaitTimeout, free_port, spawn, workdir
from tests.tools import require

#: Proxy basic authentication for the tests that use it (tinyproxy takes
#: letters, digits, "-", "." and "_" in its BasicAuth line).
USER, PASSWORD = "tunnel", "s3cret-pass"


def tinyproxy_config(directory, port, auth=None):
    """
    A tinyproxy configuration: on 127.0.0.1:PORT for 127.0.0.1 only, any
    port allowed to CONNECT (no C{ConnectPort} line), the pid file in
    C{directory}, the log on standard output (tinyproxy in the foreground
    writes it there when no C{LogFile} is given, so the test reads it line
    by line), and, run as root, the unprivileged user that tinyproxy wants.

    :param auth: C{(user, password)} for C{BasicAuth}, or C{None}.
    """
    lines = [
        "Port {}".format(port),
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        'PidFile "{}"'.format(os.path.join(directory, "tinyproxy.pid")),
        "LogLevel Info",
        "Timeout 60",
        "MaxClients 50",
    ]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        lines += ["User nobody", "Group {}".format(grp.getgrgid(nobody.pw_gid).gr_name)]
    if auth is not None:
        lines.append("BasicAuth {} {}".format(*auth))
    return "\n".join(lines) + "\n"


@inlineCallbacks
def start_tinyproxy(testcase, auth=None, name="tinyproxy"):
    """
    Start tinyproxy on a free loopback port (again on another one if the
    port was taken before tinyproxy could listen on it).

    :param auth: C{(user, password)} the proxy requires, or C{None}.
    :return: a Deferred firing with C{(protocol, port)} once it accepts
        connections.
    """
    command = require("tinyproxy", "tinyproxy")
    directory = os.path.join(workdir(testcase), name)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tinyproxy.conf")
    for attempt in range(3):
        port = free_port()
        with open(path, "w") as f:
            f.write(tinyproxy_config(directory, port, auth))
        proxy = spawn(testcase, [command, "-d", "-c", path], name)
        try:
            yield proxy.waitFor(r"Starting main loop")
        except WaitTimeout:
            if proxy.running or attempt == 2 or "listen" not in proxy.output().lower():
                raise
            continue
        return proxy, port


def connect_line(port):
    """
    :return: a regex for tinyproxy's line for a CONNECT to 127.0.0.1:PORT.
    """
    return r"Request \(file descriptor \d+\): CONNECT 127\.0\.0\.1:{} HTTP/1\.1".format(port)
