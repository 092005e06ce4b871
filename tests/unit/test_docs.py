"""
Tests for the documentation in C{docs/}: the man page committed in the
package is the one the pages build, the option reference is generated from
every option the command takes, the commands the pages show are ones the
command takes, and the README is a landing page a package index can
render.

Sphinx comes with the C{docs} and C{test} extras; without it these tests
are skipped, naming the extra, except under CI (C{CI=true}), where they
fail.
"""

import io
import os
import re
import shlex
import sys
from contextlib import redirect_stderr

from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.tools import under_ci
from uhppoted_tunnel.app import config, sample
from uhppoted_tunnel.app.options import PLUGINS, Options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
MAN = os.path.join(ROOT, "uhppoted_tunnel", "data", "uhppoted-tunnel.1")
README = os.path.join(ROOT, "README.rst")


def require_sphinx():
    """
    :raise SkipTest: naming the extra, when Sphinx is missing outside CI.
    :raise AssertionError: when it is missing under CI.
    """
    try:
        import sphinx  # noqa: F401
    except ImportError:
        message = "Sphinx is not installed (pip install '.[docs]')"
        if under_ci():
            raise AssertionError(message + ": the test extra should have installed it") from None
        raise SkipTest(message) from None
    if not os.path.isdir(DOCS):
        raise SkipTest("no docs/ beside the tests")


def build(builder, out):
    """
    Build the pages with C{builder}, warnings as errors.

    :return: C{(exit code, warnings)}.
    """
    from sphinx.cmd.build import build_main

    err = io.StringIO()
    with redirect_stderr(err):
        code = build_main(["-W", "--keep-going", "-q", "-b", builder, "-d", os.path.join(out, ".doctrees"),
                           DOCS, out])
    return code, err.getvalue()


def troff(text):
    """
    A man page without its comment lines (which name docutils' version).
    """
    return [line for line in text.splitlines() if not line.startswith('.\\"')]


def optionsref():
    """
    The Sphinx extension that writes the option reference.
    """
    sys.path.insert(0, os.path.join(DOCS, "_ext"))
    try:
        import optionsref
    finally:
        sys.path.pop(0)
    return optionsref


class ManPageTests(SynchronousTestCase):
    def test_upToDate(self):
        """
        The man page shipped in the package is what Sphinx's man builder
        makes of the pages now.
        """
        require_sphinx()
        out = os.path.abspath(self.mktemp())
        code, warnings = build("man", out)
        self.assertEqual(code, 0, warnings)
        with open(os.path.join(out, "uhppoted-tunnel.1"), encoding="utf-8") as f:
            built = f.read()
        with open(MAN, encoding="utf-8") as f:
            shipped = f.read()
        self.assertEqual(troff(shipped), troff(built),
                         "uhppoted_tunnel/data/uhppoted-tunnel.1 is out of date: rebuild it with "
                         "'python -m sphinx -b man docs docs/_build/man' and copy "
                         "docs/_build/man/uhppoted-tunnel.1 there")

    def test_everyOption(self):
        """
        The man page names every flag of C{run}.
        """
        with open(MAN, encoding="utf-8") as f:
            text = f.read().replace("\\-", "-")
        for name, *_ in Options.optParameters + Options.optFlags:
            self.assertIn("--" + name, text)


class OptionsReferenceTests(SynchronousTestCase):
    def setUp(self):
        require_sphinx()
        self.ref = optionsref()

    def test_everyFlagAndKey(self):
        """
        The reference has an entry for every flag the command takes, with
        its TOML key, and every plugin's options under the plugin's title.
        """
        text = "\n".join(self.ref.options_rst())
        for name, *_ in Options.optParameters + Options.optFlags:
            self.assertRegex(text, r"``--{}( VALUE)?`` \(".format(re.escape(name)))
        for plugin in PLUGINS:
            for option in plugin.options:
                self.assertIn("``--{}".format(option.command_line), text)
                self.assertIn("(TOML ``{}``)".format(option.name), text)
            if plugin.options:
                self.assertIn(plugin.title + " options", text)

    def test_fileKeys(self):
        """
        Every TOML key is in the reference: as a flag's key, or among the
        keys only a file has.
        """
        text = "\n".join(self.ref.options_rst() + self.ref.file_keys_rst())
        for key in config.KEYS:
            self.assertIn("``{}``".format(key), text)

    def test_extras(self):
        """
        A plugin that needs an extra says which C{pip install} brings it.
        """
        text = "\n".join(self.ref.options_rst())
        self.assertIn("pip install 'uhppoted-tunnel[zmq]'", text)


class ReadmeTests(SynchronousTestCase):
    def setUp(self):
        with open(README, encoding="utf-8") as f:
            self.text = f.read()

    def test_landingPage(self):
        """
        The README is a landing page: at most 500 lines, the demo and the
        test suite's commands first.
        """
        self.assertLessEqual(len(self.text.splitlines()), 500)
        commands = [line.strip() for line in self.text.splitlines() if line.startswith("    python3 -m venv")]
        self.assertEqual(commands[:2], [
            "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/uhppoted-tunnel demo",
            "python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/python -m twisted.trial tests"])

    def test_noRelativeImages(self):
        """
        Every image of the README has an absolute URL, so a package index
        page shows it.
        """
        for target in re.findall(r"^\.\. (?:image|figure)::\s*(\S+)", self.text, re.M):
            self.assertRegex(target, r"^https://")

    def test_linksExist(self):
        """
        Every relative link of the README names a file of the repository.
        """
        links = re.findall(r"<([^>:]+)>`_", self.text)
        self.assertTrue(links)
        for link in links:
            self.assertTrue(os.path.exists(os.path.join(ROOT, link)), link)


def documented_commands():
    """
    Every C{uhppoted-tunnel} command line of the README and the pages (a
    line continued with a backslash joined), with the file it is in.

    :return: a list of C{(file name, argument list after the program)}.
    """
    found = []
    paths = [README] + sorted(os.path.join(folder, name) for folder, _, names in os.walk(DOCS)
                              for name in names if name.endswith(".rst") and "_build" not in folder)
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"\\\n\s*", " ", f.read())
        for line in text.splitlines():
            match = re.match(r"\s+(?:(?:site|host):\s+)?(?:\$ )?(?:\.venv/bin/|sudo )?uhppoted-tunnel (.*)$", line)
            if match:
                command = re.split(r"\s[|>]\s", match.group(1))[0]
                found.append((os.path.relpath(path, ROOT), shlex.split(command)))
    return found


class DocumentedCommandsTests(SynchronousTestCase):
    """
    The commands the README and the pages show are ones the command takes.
    """

    def setUp(self):
        # a configuration on this machine must not change what is parsed
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.commands = documented_commands()

    def test_found(self):
        """
        The commands are found: each transport's pair, the tutorial's, the
        samples and the emulator's.
        """
        self.assertGreater(len(self.commands), 50)

    def test_run(self):
        """
        Each C{run} command line (an example's placeholders such as HOST
        kept) parses: its flags exist and its connectors are known; a
        C{--config} naming the installed file is read from the shipped
        sample.
        """
        sample = os.path.join(ROOT, "uhppoted_tunnel", "data", "uhppoted-tunnel.toml")
        checked = 0
        for where, args in self.commands:
            if not args[0].startswith("-") or "..." in args or "CONNECTOR" in args:
                continue
            args = [arg.replace("/etc/uhppoted/uhppoted-tunnel.toml", sample) for arg in args]
            options = Options()
            try:
                options.parseOptions(args)
            except usage.UsageError as e:
                self.fail("{}: uhppoted-tunnel {}: {}".format(where, " ".join(args), e))
            checked += 1
        self.assertGreater(checked, 30)

    def test_sample(self):
        """
        Each C{sample} command names a shipped file.
        """
        found = [args[1:] for where, args in self.commands if args[0] == "sample" and "|" not in args]
        self.assertIn(["toml"], found)
        for args in found:
            args = ["uhppoted-tunnel@.service" if arg == "$unit" else arg for arg in args]
            sample.find(args)

    def test_emulator(self):
        """
        Each C{emulator} command's options are the emulator's.
        """
        from uhppoted_tunnel.emulator.__main__ import Options as EmulatorOptions

        found = [args[1:] for where, args in self.commands if args[0] == "emulator" and "[options]" not in args]
        self.assertGreaterEqual(len(found), 3)
        for args in found:
            EmulatorOptions().parseOptions(args)
