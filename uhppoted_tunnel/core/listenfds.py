# -*- test-case-name: tests.unit.test_endpoints -*-
"""
The sockets a service manager passed this process, read the way
C{sd_listen_fds(3)} reads them: C{LISTEN_PID} must be this process,
C{LISTEN_FDS} counts the descriptors from 3, and C{LISTEN_FDNAMES}, when
there, names them. A tool that passes no names (C{systemd-socket-activate}
without C{--fdname}, systemd before v227) still passes sockets usable by
index; only a lookup by name needs names.

Twisted's own reader (C{twisted.python.systemd.ListenFDs}) ignores every
socket when the names are missing, and removes C{LISTEN_PID} and
C{LISTEN_FDS} from C{os.environ} when C{twisted.internet.endpoints} is
imported: L{uhppoted_tunnel.LISTEN_ENVIRONMENT} keeps what the process
started with.
"""

#: The first descriptor passed (C{SD_LISTEN_FDS_START}).
FIRST = 3

#: The variables a service manager sets.
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class PassedSockets:
    """
    The descriptors passed, in order, and their names (empty when none
    were given).
    """

    def __init__(self, descriptors=(), names=()):
        self.descriptors = list(descriptors)
        self.names = tuple(names)

    @classmethod
    def fromEnvironment(cls, environ, pid):
        """
        :param environ: a mapping with the C{LISTEN_*} variables.
        :param pid: this process's id.
        """
        if environ.get("LISTEN_PID") != str(pid):
            return cls()
        try:
            count = int(environ.get("LISTEN_FDS", "0"))
        except ValueError:
            return cls()
        descriptors = range(FIRST, FIRST + max(count, 0))
        names = environ.get("LISTEN_FDNAMES", "")
        names = tuple(names.split(":")) if names else ()
        if len(names) != len(descriptors):
            # names that do not match the count name nothing reliably
            names = ()
        return cls(descriptors, names)

    def inheritedDescriptors(self):
        return list(self.descriptors)

    def inheritedNamedDescriptors(self):
        return dict(zip(self.names, self.descriptors))
