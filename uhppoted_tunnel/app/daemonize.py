# -*- test-case-name: tests.unit.test_daemonize -*-
"""
C{uhppoted-tunnel daemonize} and C{undaemonize}: write (and remove) a
hardened systemd unit that runs this tunnel, as the Go tunnel's commands
of the same names do.

::

    uhppoted-tunnel daemonize [--label LABEL] [--user USER[:GROUP]] [--create-user]
                              [--unit-dir DIR] [--executable PATH] --config FILE#SECTION [run options]
    uhppoted-tunnel undaemonize [--label LABEL] [--unit-dir DIR]

The unit is C{uhppoted-tunnel.service} for the default label, and
C{uhppoted-tunnel-LABEL.service} for another (the Go tunnel's name); it
runs the installed command with the C{--config} and the other C{run}
options given, as C{Type=notify}, after C{uhppoted-tunnel check} with the
same options. It is written to C{/etc/systemd/system}, or to C{--unit-dir}
(for tests and packagers). Like the Go tunnel, daemonize takes only the
connectors its Go counterpart takes.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from twisted.python import usage

from uhppoted_tunnel.app import config
from uhppoted_tunnel.interfaces import IN, OUT
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.unit import (
    SERVICE,
    SYSTEMD_RUNNING,
    UNIT_DIR,
    DaemonizeError,
    refuse_unit_syntax,
    render,
    under_home,
    unit_name,
)

DEFAULT_USER = "uhppoted"

#: The connectors the Go tunnel's daemonize accepts, by role.
GO_DAEMONIZE = {
    IN: ("udp/listen", "tcp/client", "tcp/server", "tls/client", "tls/server", "http", "https"),
    OUT: ("udp/broadcast", "tcp/client", "tcp/server", "tls/client", "tls/server"),
}

#: Flags of daemonize itself, not passed to run: name -> takes a value.
OWN_FLAGS = {"label": True, "user": True, "unit-dir": True, "executable": True, "create-user": False}

#: Options whose values are paths, made absolute for the unit.
PATHS = ("lockfile", "ca-cert", "cert", "key", "html", "event-spool")

_USER = re.compile(r"[a-z_][a-z0-9_-]*[$]?")


class DaemonizeOptions(Options):
    """
    uhppoted-tunnel daemonize [--label LABEL] [--user USER] --config FILE#SECTION [run options]
    """

    synopsis = ("daemonize [--label LABEL] [--user USER[:GROUP]] [--create-user] [--unit-dir DIR] "
                "--config FILE#SECTION [run options]")

    longdesc = ("Writes a hardened systemd unit that runs this tunnel with the --config and the other run "
                "options given, and says what to run next.")

    optFlags = Options.optFlags + [
        ["create-user", None, "Create the user (a system user with no login) if it does not exist; needs root."],
    ]

    optParameters = Options.optParameters + [
        ["label", None, None, "Names the unit: uhppoted-tunnel-LABEL.service (default uhppoted-tunnel, "
                              "which names uhppoted-tunnel.service); TOML 'label'."],
        ["user", None, None, "The user (and group, USER:GROUP) the tunnel runs as (default uhppoted); "
                             "systemd allocates it dynamically if it does not exist; TOML 'user'."],
        ["unit-dir", None, None, "Write the unit here instead of " + UNIT_DIR + " (tests, packagers)."],
        ["executable", None, None, "The uhppoted-tunnel command the unit runs (default: this one)."],
    ]


class UndaemonizeOptions(usage.Options):
    """
    uhppoted-tunnel undaemonize [--label LABEL] [--unit-dir DIR]
    """

    synopsis = "undaemonize [--label LABEL] [--unit-dir DIR]"

    optFlags = []

    optParameters = [
        ["label", None, "uhppoted-tunnel", "The label given to daemonize."],
        ["unit-dir", None, None, "Remove the unit from here instead of " + UNIT_DIR + "."],
    ]

    def parseArgs(self, *args):
        if args:
            raise usage.UsageError("unexpected argument '{}'".format(args[0]))



def installed_command():
    """
    The C{uhppoted-tunnel} command the unit runs: the script beside the
    Python running this one, else the one on C{PATH}, else this program.
    """
    beside = os.path.join(os.path.dirname(sys.executable), SERVICE)
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which(SERVICE) or os.path.abspath(sys.argv[0])


def run_arguments(argv, options):
    """
    The arguments for C{run}: those given to daemonize, less its own flags,
    with the config file and path values made absolute.

    :param argv: daemonize's arguments (Go's single-dash flags converted).
    :param options: the parsed L{DaemonizeOptions}.
    """
    result = []
    args = list(argv)
    if args and args[0] == "run":
        args.pop(0)
    while args:
        arg = args.pop(0)
        name, equals, value = arg[2:].partition("=") if arg.startswith("--") else (None, "", "")
        if name in OWN_FLAGS:
            if OWN_FLAGS[name] and not equals and args:
                args.pop(0)
            continue
        if name == "config" or name in PATHS:
            if not equals:
                value = args.pop(0) if args else ""
            value = _absolute_config(value) if name == "config" else os.path.abspath(value)
            result += ["--" + name, value]
            continue
        result.append(arg)
    if not options["config"] and os.path.exists(config.DEFAULT_CONFIG):
        result += ["--config", config.DEFAULT_CONFIG]
    return result


def refuse_values(arguments, executable, workdir):
    """
    Refuse any value bound for the unit that systemd would read as syntax
    (see L{unit.refuse_unit_syntax}), naming its flag.

    :raise DaemonizeError: one line (exit 2).
    """
    flag = "argument"
    for arg in arguments:
        if arg.startswith("--"):
            flag, equals, value = arg.partition("=")
            refuse_unit_syntax(flag, value if equals else arg)
        else:
            refuse_unit_syntax(flag, arg)
    refuse_unit_syntax("--executable", executable)
    if workdir:
        refuse_unit_syntax("--config", workdir)


def _absolute_config(value):
    path, section = config.split_config_arg(value)
    if path is None:
        path = config.DEFAULT_CONFIG
    return os.path.abspath(path) + ("#" + section if section else "")


def _settings(options):
    """
    The TOML C{label} and C{user}, which belong to daemonize only.
    """
    path, section = config.split_config_arg(options["config"]) if options["config"] else (None, None)
    try:
        return config.load(path, section, explicit=options["config"] is not None)
    except config.ConfigError as e:
        raise DaemonizeError(str(e)) from None


def refuse_connectors(options):
    """
    Refuse the connectors the Go tunnel's daemonize refuses.

    :raise DaemonizeError: naming the connector and what is accepted.
    """
    for role in (IN, OUT):
        spec = options.ends[role][1]
        kind = spec.kind
        if kind not in GO_DAEMONIZE[role]:
            raise DaemonizeError(
                "daemonize: --{} '{}' is not taken by daemonize, as with the Go tunnel ({} only); "
                "run it from the templated unit instead (uhppoted-tunnel sample unit uhppoted-tunnel@.service)".format(
                    role, spec.text, ", ".join(GO_DAEMONIZE[role])))



def _user_exists(name):
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def create_user(user, group, run=subprocess.run):
    """
    Create a system user with no login shell and no home (and its group).

    :raise DaemonizeError: when not root, or useradd fails.
    """
    if os.geteuid() != 0:
        raise DaemonizeError("--create-user: creating user '{}' needs root (sudo)".format(user), code=1)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin"]
    command += ["--gid", group] if group else ["--user-group"]
    result = run(command + [user], capture_output=True, text=True)
    if result.returncode != 0:
        raise DaemonizeError("--create-user: {} failed: {}".format(
            " ".join(command + [user]), " ".join((result.stderr or "").split())), code=1)


def daemonize(argv, out, systemd_running=None, user_exists=_user_exists, make_user=create_user):
    """
    Write the unit and print what to do next.

    :param argv: the arguments after C{daemonize}.
    :param out: a text stream for the report.
    :param systemd_running: the folder whose presence says systemd runs
        (L{SYSTEMD_RUNNING} when C{None}).
    :return: the unit file's path.
    :raise DaemonizeError: refused or failed, one line.
    :raise usage.UsageError: for a bad option.
    """
    options = DaemonizeOptions()
    options.parseOptions(argv)
    refuse_connectors(options)
    unit_dir = options["unit-dir"]
    systemd_running = systemd_running or SYSTEMD_RUNNING
    if unit_dir is None:
        if not os.path.isdir(systemd_running):
            raise DaemonizeError("daemonize: systemd is not running here (no {}); --unit-dir DIR writes the "
                                 "unit elsewhere".format(systemd_running))
        unit_dir = UNIT_DIR
    settings = _settings(options)
    name = unit_name(options["label"] or settings.get("label") or SERVICE)
    user_text = options["user"] or settings.get("user") or DEFAULT_USER
    user, _, group = user_text.partition(":")
    for part in filter(None, (user, group)):
        if not _USER.fullmatch(part):
            raise DaemonizeError("--user '{}': not a user name (USER or USER:GROUP)".format(user_text))
    executable = os.path.abspath(options["executable"] or installed_command())
    if not os.access(executable, os.X_OK):
        raise DaemonizeError("--executable '{}': not an executable file".format(executable))

    exists = user_exists(user)
    if options["create-user"] and not exists:
        make_user(user, group or None)
        exists = True

    config_path = config.split_config_arg(options["config"])[0] if options["config"] else None
    workdir = os.path.dirname(os.path.abspath(config_path)) if config_path else None
    bind_device = any(options.ends[role][1].interface for role in (IN, OUT))
    arguments = run_arguments(argv, options)
    refuse_values(arguments, executable, workdir)
    text = render(name, executable, arguments, user, group or None, workdir, bind_device,
                  label_flag="" if name == SERVICE else " --label " + name[len(SERVICE) + 1:])
    path = os.path.join(unit_dir, name + ".service")
    try:
        os.makedirs(unit_dir, exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as e:
        raise DaemonizeError("daemonize: cannot write {}: {}".format(path, e.strerror or e), code=1) from None

    say = out.write
    say("   ... wrote {}\n".format(path))
    say("   ... {} runs {} as user '{}'{}\n".format(name, executable, user,
                                                   " (systemd allocates it at start: DynamicUser=yes)"
                                                   if not exists else ""))
    if not exists:
        say("   ... user '{}' does not exist: certificate and key files must be readable by any user, or create it "
            "(sudo useradd --system --no-create-home --shell /usr/sbin/nologin {}, or daemonize --create-user) "
            "and give it the files\n".format(user, user))
    if under_home(executable):
        say("   ... WARNING: {} is under a home folder, which the unit hides (ProtectHome=yes): install the "
            "tunnel elsewhere (e.g. a virtualenv in /opt) and daemonize with that command\n".format(executable))
    say("\n   Check the configuration as the service will, then start it:\n\n")
    say("     > {} check {}\n".format(executable, " ".join(shlex.quote(a) for a in run_arguments(argv, options))))
    if unit_dir == UNIT_DIR:
        say("     > sudo systemctl daemon-reload\n")
    else:
        say("     > sudo cp {} {}/ && sudo systemctl daemon-reload\n".format(path, UNIT_DIR))
    say("     > sudo systemctl enable --now {}\n".format(name))
    say("     > systemctl status {}\n".format(name))
    say("     > journalctl -u {} -f\n\n".format(name))
    return path


def undaemonize(argv, out, systemctl=None, systemd_running=None):
    """
    Stop and disable the unit and remove it.

    :param argv: the arguments after C{undaemonize}.
    :param systemctl: runs C{systemctl ARGS}, returning C{(code, output)};
        C{None} when the unit is removed from a C{--unit-dir}.
    :return: the unit file's path.
    :raise DaemonizeError: failed, one line.
    """
    options = UndaemonizeOptions()
    options.parseOptions(argv)
    name = unit_name(options["label"])
    systemd_running = systemd_running or SYSTEMD_RUNNING
    if options["unit-dir"] is None and not os.path.isdir(systemd_running):
        raise DaemonizeError("undaemonize: systemd is not running here (no {}); --unit-dir DIR removes the "
                             "unit from elsewhere".format(systemd_running))
    unit_dir = options["unit-dir"] or UNIT_DIR
    path = os.path.join(unit_dir, name + ".service")
    if not os.path.exists(path):
        out.write("   ... nothing to do: {} does not exist\n".format(path))
        return path
    if options["unit-dir"] is None and systemctl is not None:
        code, output = systemctl("disable", "--now", name + ".service")
        if code != 0:
            raise DaemonizeError("undaemonize: systemctl disable --now {} failed: {}".format(
                name, " ".join(output.split())), code=1)
        out.write("   ... stopped and disabled {}\n".format(name))
    try:
        os.remove(path)
    except OSError as e:
        raise DaemonizeError("undaemonize: cannot remove {}: {}".format(path, e.strerror or e), code=1) from None
    out.write("   ... removed {}\n".format(path))
    if options["unit-dir"] is None:
        out.write("\n     > sudo systemctl daemon-reload\n\n")
    out.write("   The configuration, certificates and /var/lib/uhppoted-tunnel (the event spool) were kept.\n")
    return path


def systemctl(*args):
    """
    Run C{systemctl ARGS}.

    :return: C{(exit code, output)}.
    """
    command = shutil.which("systemctl")
    if command is None:
        return 1, "systemctl not found"
    result = subprocess.run([command] + list(args), capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def main(command, argv, stdout, stderr):
    """
    The C{daemonize} and C{undaemonize} commands.

    :return: the exit code: 0, 2 refused (bad options, connectors, no
        systemd), 1 failed (writing, creating the user).
    """
    try:
        if command == "daemonize":
            daemonize(argv, stdout)
        else:
            undaemonize(argv, stdout, systemctl)
    except usage.UsageError as e:
        stderr.write("uhppoted-tunnel {}: {}\n".format(command, e))
        return 2
    except DaemonizeError as e:
        stderr.write("uhppoted-tunnel: {}\n".format(e))
        return e.code
    return 0
