"""
Tests for the documentation in C{docs/}: the man page committed in the
package is the one the pages build, the option reference is generated from
every option the command takes, and the README is a landing page a package
index can render.

Sphinx comes with the C{docs} and C{test} extras; without it these tests
are skipped, naming the extra, except under CI (C{CI=true}), where they
fail.
"""

import io
import os
import re
import sys
from contextlib import redirect_stderr

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.tools import under_ci
from uhppoted_tunnel.app import config
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
