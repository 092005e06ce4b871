# -*- test-case-name: tests.unit.test_declare -*-
"""
Which distributions of a pip extra are not installed, read from the
installed distribution's own metadata (its C{Requires-Dist} lines), so that
a connector whose transport needs them is refused before anything starts,
whether its maker imports them at once or only when it makes an end.
"""

import re
from importlib import metadata

#: C{NAME[...] ... ; ... extra == "EXTRA" ...}
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*(?:;(.*))?$")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def requirements(extra, requires):
    """
    The distributions that C{extra} adds.

    :param extra: the extra's name (C{"zmq"}).
    :param requires: C{Requires-Dist} lines, as
        C{importlib.metadata.requires} gives them.
    :return: their names, in order.
    """
    found = []
    for line in requires or ():
        match = _REQUIREMENT.match(line)
        if match and extra in _EXTRA.findall(match.group(2) or ""):
            found.append(match.group(1))
    return found


def installed(name):
    """
    Whether a distribution is installed.
    """
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing(distribution, extra, requires=metadata.requires, installed=installed):
    """
    The distributions of C{distribution[extra]} that are not installed.

    :param requires: C{name -> Requires-Dist lines} (raising
        C{PackageNotFoundError} when C{distribution} is not installed, as
        when it runs from a source tree: nothing is then known missing).
    :param installed: C{name -> bool}.
    :return: their names, in order; empty when all are there or nothing is
        known.
    """
    try:
        lines = requires(distribution)
    except metadata.PackageNotFoundError:
        return []
    return [name for name in requirements(extra, lines) if not installed(name)]
