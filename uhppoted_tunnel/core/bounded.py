# -*- test-case-name: tests.unit.test_bounded -*-
"""
Reading a file the tunnel is given (configuration, certificates, keys,
tokens, passwords), bounded: at most a limit read, and a file over it an
error in one line, so that C{/dev/zero} or a huge file named by mistake
(or by someone hostile) costs a little memory and an exit 2, never a
C{MemoryError}.
"""

import os

#: The most read from a configuration, certificate or key file (1 MiB:
#: far more than any holds, a long chain included).
MAX_FILE = 1 << 20


class FileTooLarge(ValueError):
    """
    A file over its limit: C{str()} is one line naming it.
    """


def read_bounded(path, where, limit=MAX_FILE, what="the file it should be"):
    """
    The bytes of a file, reading at most C{limit} + 1.

    :param where: what names the file for the user, e.g. C{"--cert
        'a.pem'"}.
    :param what: what the file should be, for the message, e.g. C{"a
        certificate"}.
    :return: C{(data, mode)}: the bytes and the file's C{st_mode}.
    :raise FileTooLarge: one line naming it when it holds more.
    :raise OSError: when it cannot be opened or read (the callers say why
        in their own words).
    """
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge("{}: over {} bytes (is it {}?)".format(where, limit, what))
    return data, mode
