# -*- test-case-name: tests.unit.test_sample -*-
"""
C{uhppoted-tunnel sample}: prints a file shipped with the package (the
sample TOML file, the C{.tac} file, a systemd unit, the man page), so a
package install can follow the deployment documentation::

    uhppoted-tunnel sample toml > /etc/uhppoted/uhppoted-tunnel.toml
    uhppoted-tunnel sample unit uhppoted-tunnel@.service > /etc/systemd/system/uhppoted-tunnel@.service
"""

from importlib import resources

#: the package that holds the files
DATA = "uhppoted_tunnel.data"

#: the files by name, besides the units (C{unit NAME})
FILES = {
    "toml": "uhppoted-tunnel.toml",
    "tac": "uhtunnel.tac",
    "man": "uhppoted-tunnel.1",
}

USAGE = """\
Usage: uhppoted-tunnel sample toml | tac | man | unit NAME | list

Prints a file shipped with uhppoted-tunnel to standard output:
  toml       the commented sample configuration (uhppoted-tunnel.toml)
  tac        the twistd application file (uhtunnel.tac)
  man        the man page (uhppoted-tunnel.1; man -l - reads it)
  unit NAME  a systemd unit: {units}
  list       where the files are
"""


def data():
    """
    :return: the folder of the shipped files, as an importlib resource.
    """
    return resources.files(DATA)


def units():
    """
    :return: the names of the shipped systemd units, sorted.
    """
    return sorted(entry.name for entry in data().joinpath("systemd").iterdir() if entry.is_file())


def find(argv):
    """
    The file that C{argv} names.

    :param argv: the arguments after C{sample}.
    :return: an importlib resource.
    :raise ValueError: one line naming what is wrong and what is accepted.
    """
    if len(argv) == 2 and argv[0] == "unit":
        if argv[1] not in units():
            raise ValueError("sample unit: no unit named '{}' (expected one of {})".format(argv[1], ", ".join(units())))
        return data().joinpath("systemd", argv[1])
    if len(argv) == 1 and argv[0] in FILES:
        return data().joinpath(FILES[argv[0]])
    if argv[:1] == ["unit"]:
        raise ValueError("sample unit: name one unit ({})".format(", ".join(units())))
    raise ValueError("sample: expected toml, tac, man, unit NAME or list (see 'uhppoted-tunnel sample help')")


def main(argv, out, err):
    """
    The C{sample} command.

    :param argv: the arguments after C{sample}.
    :param out: where the file goes (text).
    :param err: where a usage error goes.
    :return: the exit code: 0, or 2 for a usage error.
    """
    if argv in ([], ["help"], ["--help"], ["-h"]):
        out.write(USAGE.format(units=", ".join(units())))
        return 0 if argv else 2
    if argv == ["list"]:
        with resources.as_file(data()) as folder:
            for name in sorted(FILES.values()) + ["systemd/" + unit for unit in units()]:
                out.write("{}/{}\n".format(folder, name))
        return 0
    try:
        found = find(argv)
    except ValueError as e:
        err.write("uhppoted-tunnel: {}\n".format(e))
        return 2
    out.write(found.read_text(encoding="utf-8"))
    return 0
