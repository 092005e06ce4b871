# -*- test-case-name: tests.unit.test_config -*-
"""
Tests for L{uhppoted_tunnel.app.config}: the Go-compatible TOML file.
"""

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.config import (
    DEFAULT_CONFIG,
    ConfigError,
    load,
    split_config_arg,
)
from uhppoted_tunnel.core.durations import format_duration, parse_duration


class ParseDurationTests(SynchronousTestCase):
    """
    L{parse_duration} reads Go's C{time.ParseDuration} syntax as seconds.
    """

    def test_units(self):
        """
        Every Go unit is understood, alone and combined.
        """
        for text, seconds in [
            ("1s", 1.0), ("1250ms", 1.25), ("5m", 300.0), ("1h30m", 5400.0),
            ("1.5s", 1.5), ("300us", 0.0003), ("250\u00b5s", 0.00025),
            ("250\u03bcs", 0.00025), ("10ns", 1e-08), ("0", 0.0),
            ("0s", 0.0), (".5s", 0.5), ("5.s", 5.0), ("+2s", 2.0),
            ("1m30.5s", 90.5), ("2h45m30s", 9930.0),
        ]:
            self.assertEqual(parse_duration(text), seconds, text)

    def test_fraction_of_nanosecond(self):
        """
        Like Go, a duration is truncated to whole nanoseconds.
        """
        self.assertEqual(parse_duration("1.0000000009s"), 1.0)

    def test_invalid(self):
        """
        Anything else is a L{ValueError} quoting the text and showing
        examples of valid durations.
        """
        for text in ["", "fast", "5", "1h30", "s", ".s", "1 s", "1S",
                     "1sec", "1d", "+", "0x10s", "1s ", "1..5s"]:
            e = self.assertRaises(ValueError, parse_duration, text)
            self.assertEqual(
                str(e),
                "invalid duration %r (expected e.g. 1s, 1250ms, 5m)" % (text,),
            )

    def test_negative(self):
        """
        Go allows negative durations; they mean nothing here, so they are
        refused.
        """
        e = self.assertRaises(ValueError, parse_duration, "-1s")
        self.assertEqual(str(e), "invalid duration '-1s' (must not be negative)")

    def test_not_a_string(self):
        """
        A number is not a duration: it has no unit.
        """
        e = self.assertRaises(ValueError, parse_duration, 5)
        self.assertEqual(
            str(e), "invalid duration 5 (expected a string such as '5s')")

    def test_out_of_range(self):
        """
        Durations beyond Go's int64 nanoseconds (about 292 years) are
        refused.
        """
        e = self.assertRaises(ValueError, parse_duration, "2562048h")
        self.assertEqual(str(e), "invalid duration '2562048h' (out of range)")


class FormatDurationTests(SynchronousTestCase):
    """
    L{format_duration} writes durations as Go's C{Duration.String} does.
    """

    def test_examples(self):
        """
        Seconds and longer use h, m and s; shorter durations the largest
        sub-second unit.
        """
        for seconds, text in [
            (0, "0s"), (1.0, "1s"), (1.25, "1.25s"), (300, "5m0s"),
            (5400, "1h30m0s"), (3600, "1h0m0s"), (90.5, "1m30.5s"),
            (0.25, "250ms"), (0.0015, "1.5ms"), (0.0003, "300\u00b5s"),
            (1e-08, "10ns"), (-1.5, "-1.5s"),
        ]:
            self.assertEqual(format_duration(seconds), text, seconds)

    @given(st.integers(min_value=0, max_value=10**12))
    def test_round_trip(self, milliseconds):
        """
        Parsing a formatted duration gives it back, for any whole number of
        milliseconds.
        """
        seconds = milliseconds / 1000
        self.assertEqual(parse_duration(format_duration(seconds)), seconds)

    def test_round_trip_long(self):
        """
        A long duration keeps its milliseconds: hypothesis once found
        789056836.579 s coming back as 789056836.5789999 s.
        """
        self.assertEqual(parse_duration(format_duration(789056836.579)), 789056836.579)


class SplitConfigArgTests(SynchronousTestCase):
    """
    L{split_config_arg} splits C{--config} into a file and a section.
    """

    def test_forms(self):
        """
        C{#} and C{::} both introduce a section; either half may be absent.
        """
        for arg, expected in [
            ("tunnel.toml#host", ("tunnel.toml", "host")),
            ("tunnel.toml::host", ("tunnel.toml", "host")),
            ("tunnel.toml", ("tunnel.toml", None)),
            ("#host", (None, "host")),
            ("::host", (None, "host")),
            ("/etc/x.toml#", ("/etc/x.toml", None)),
            ("", (None, None)),
            ("/a::b/c.toml#host", ("/a::b/c.toml", "host")),
        ]:
            self.assertEqual(split_config_arg(arg), expected, arg)


class LoadTestsMixin:
    """
    Writes TOML files for L{load}.
    """

    def write(self, text):
        """
        :param text: the file's contents.
        :return: the path of a new file holding them.
        """
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def load_section(self, text, section="host"):
        """
        :param text: a TOML file's contents.
        :param section: the section to choose.
        :return: L{load}'s settings for that section.
        """
        return load(self.write(text), section, explicit=True)

    def assertConfigError(self, text, message, section="host"):
        """
        Loading C{text} raises a one-line L{ConfigError}.

        :param message: the error's text after the file name.
        """
        path = self.write(text)
        e = self.assertRaises(ConfigError, load, path, section, explicit=True)
        self.assertEqual(str(e), path + message)
        self.assertNotIn("\n", str(e))


class LoadFileTests(LoadTestsMixin, SynchronousTestCase):
    """
    L{load} finds, reads and merges sections.
    """

    def test_section_over_defaults(self):
        """
        The section's value wins over C{[defaults]}, key by key; keys only in
        C{[defaults]} still apply.
        """
        settings = self.load_section(
            '[defaults]\nudp-timeout = "5s"\ndebug = true\n'
            '[host]\nudp-timeout = "1s"\nin = "udp/listen:0.0.0.0:60000"\n'
            '[other]\nout = "tcp/client:1.2.3.4:12345"\n')
        self.assertEqual(
            dict(settings),
            {"udp-timeout": 1.0, "debug": True,
             "in": "udp/listen:0.0.0.0:60000"})

    def test_defaults_only(self):
        """
        With no section, only C{[defaults]} applies.
        """
        path = self.write('[defaults]\ndebug = true\n[host]\nconsole = true\n')
        self.assertEqual(dict(load(path, None, explicit=True)), {"debug": True})

    def test_no_defaults(self):
        """
        A file need not have C{[defaults]}.
        """
        self.assertEqual(dict(self.load_section('[host]\nconsole = false\n')),
                         {"console": False})

    def test_source(self):
        """
        L{Settings.source} names the file, section and key a value came from.
        """
        path = self.write('[defaults]\ndebug = true\n[host]\nconsole = true\n')
        settings = load(path, "host", explicit=True)
        self.assertEqual(settings.source("debug"), path + " [defaults] debug")
        self.assertEqual(settings.source("console"), path + " [host] console")
        self.assertEqual(settings.source("label"), path + " [host] label")

    def test_unknown_keys_warn(self):
        """
        Unknown keys, which newer Go versions may add, and keys outside any
        section are ignored with a warning.
        """
        path = self.write('stray = 1\n[defaults]\nfrobnicate = 1\n'
                          '[host]\ndebug = true\n')
        settings = load(path, "host", explicit=True)
        self.assertEqual(dict(settings), {"debug": True})
        self.assertEqual(settings.warnings, [
            path + ": stray outside any section (ignored)",
            path + " [defaults] frobnicate: unknown key (ignored)",
        ])

    def test_missing_explicit_file(self):
        """
        A file the user named must exist.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, load, path, None, explicit=True)
        self.assertEqual(str(e), path + ": no such file")

    def test_missing_default_file(self):
        """
        The default file is read only if it exists.
        """
        settings = load(self.mktemp(), None, explicit=False)
        self.assertEqual((dict(settings), settings.warnings), ({}, []))

    def test_missing_default_file_with_section(self):
        """
        A section cannot come from a missing file, even the default one.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, load, path, "host", explicit=False)
        self.assertEqual(str(e), path + ": no such file")

    def test_default_path(self):
        """
        No path means L{DEFAULT_CONFIG}.
        """
        self.assertEqual(DEFAULT_CONFIG, "/etc/uhppoted/uhppoted-tunnel.toml")
        self.patch(config, "DEFAULT_CONFIG", self.write("[defaults]\ndebug = true\n"))
        settings = load(None, None, explicit=False)
        self.assertEqual(settings.path, config.DEFAULT_CONFIG)
        self.assertEqual(dict(settings), {"debug": True})

    def test_directory(self):
        """
        A file that cannot be read is reported with the system's reason.
        """
        path = self.mktemp()
        os.mkdir(path)
        e = self.assertRaises(ConfigError, load, path, None, explicit=True)
        self.assertEqual(str(e), path + ": Is a directory")

    def test_syntax_error(self):
        """
        A TOML syntax error names the file, line and column.
        """
        self.assertConfigError(
            '[host]\ndebug = \n',
            ": invalid TOML: Invalid value (at line 2, column 9)")

    def test_not_utf8(self):
        """
        A file that is not UTF-8 is reported as such.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[host]\nlabel = "caf\xe9"\n')
        e = self.assertRaises(ConfigError, load, path, "host", explicit=True)
        self.assertEqual(str(e), path + ": invalid TOML: not UTF-8 text")

    def test_missing_section(self):
        """
        A section that is not in the file is an error naming it.
        """
        self.assertConfigError('[defaults]\ndebug = true\n',
                               ": no section [host]")

    def test_section_not_a_table(self):
        """
        A section name given to a plain value is an error.
        """
        self.assertConfigError('host = 1\n', ": host is not a section")

    def test_nested_too_deeply(self):
        """
        A value nested deeper than the parser can go is a one-line error,
        not a RecursionError.
        """
        self.assertConfigError("[host]\nrate-limit = " + "[" * 500 + "]" * 500 + "\n",
                               ": invalid TOML: nested too deeply")

    def test_too_large(self):
        """
        A file over L{config.MAX_CONFIG_SIZE} bytes is an error, and only
        that much and one byte more is read.
        """
        self.patch(config, "MAX_CONFIG_SIZE", 64)
        self.assertConfigError("[host]\n" + "#" * 64 + "\n", ": over 64 bytes (is it a configuration file?)")
        load(self.write("[host]\n" + "#" * 56), "host", explicit=True)

    def test_endless(self):
        """
        An endless file such as /dev/zero is refused once the cap is read.
        """
        e = self.assertRaises(ConfigError, load, "/dev/zero", None, explicit=True)
        self.assertEqual(str(e), "/dev/zero: over 1048576 bytes (is it a configuration file?)")

    def test_long_value_shortened(self):
        """
        A bad value is shown shortened to keep the message short.
        """
        e = self.assertRaises(ConfigError, load, self.write("[host]\nrate-limit = [" + "1, " * 100 + "]\n"),
                              "host", explicit=True)
        self.assertLess(len(str(e).split(": expected")[1]), 120)
        self.assertTrue(str(e).endswith("..."), str(e))


class ConversionTests(LoadTestsMixin, SynchronousTestCase):
    """
    Each known key is converted and checked.
    """

    def assertConverts(self, toml, key, value):
        """
        C{key = toml} in C{[host]} loads as C{value}.
        """
        settings = self.load_section("[host]\n%s = %s\n" % (key, toml))
        self.assertEqual(settings[key], value)
        self.assertEqual(type(settings[key]), type(value))

    def assertRefuses(self, toml, key, message):
        """
        C{key = toml} in C{[host]} is an error: C{message}.
        """
        self.assertConfigError("[host]\n%s = %s\n" % (key, toml),
                               " [host] %s: %s" % (key, message))

    def test_strings(self):
        """
        String keys are taken as written; anything else is refused.
        """
        for key in ["in", "out", "lockfile", "ca-cert", "cert", "key",
                    "html", "label", "user"]:
            self.assertConverts('"x/y"', key, "x/y")
            self.assertRefuses("12", key, "expected a string, got 12")

    def test_booleans(self):
        """
        Boolean keys take TOML booleans only.
        """
        for key in ["remove-lockfile", "console", "debug"]:
            self.assertConverts("true", key, True)
            self.assertConverts("false", key, False)
            self.assertRefuses('"yes"', key,
                               "expected true or false, got 'yes'")

    def test_client_auth(self):
        """
        C{client-auth} takes a boolean, or the strings Go's sample file uses;
        C{"required"} is true (Go reads it as false).
        """
        self.assertConverts("true", "client-auth", True)
        self.assertConverts("false", "client-auth", False)
        for text in ["required", "true", "yes", "on", "Required"]:
            self.assertConverts('"%s"' % text, "client-auth", True)
        for text in ["false", "no", "off", "none", ""]:
            self.assertConverts('"%s"' % text, "client-auth", False)
        self.assertRefuses('"maybe"', "client-auth",
                           "expected true, false or \"required\", got 'maybe'")

    def test_max_retries(self):
        """
        C{max-retries} is an integer, -1 meaning forever.
        """
        self.assertConverts("-1", "max-retries", -1)
        self.assertConverts("32", "max-retries", 32)
        self.assertRefuses("-2", "max-retries",
                           "expected an integer >= -1, got -2")
        self.assertRefuses("1.5", "max-retries",
                           "expected an integer >= -1, got 1.5")
        self.assertRefuses("true", "max-retries",
                           "expected an integer >= -1, got true")

    def test_durations(self):
        """
        Durations are Go duration strings, converted to seconds; the
        timeouts must be more than zero.
        """
        for key in ["max-retry-delay", "udp-timeout", "handshake-timeout"]:
            self.assertConverts('"1250ms"', key, 1.25)
            self.assertRefuses(
                '"fast"', key,
                "invalid duration 'fast' (expected e.g. 1s, 1250ms, 5m)")
        self.assertConverts('"0s"', "max-retry-delay", 0.0)
        for key in ["udp-timeout", "handshake-timeout"]:
            self.assertRefuses('"0s"', key, "invalid duration '0s' (must be > 0)")

    def test_log_level(self):
        """
        C{log-level} is debug, info, warn or error in any case; warning
        means warn.
        """
        for text, level in [("debug", "debug"), ("INFO", "info"),
                            ("Warn", "warn"), ("warning", "warn"),
                            ("error", "error")]:
            self.assertConverts('"%s"' % text, "log-level", level)
        self.assertRefuses('"verbose"', "log-level",
                           "expected debug, info, warn or error, got 'verbose'")

    def test_rate_limit(self):
        """
        C{rate-limit} is a positive number of requests a second;
        C{rate-limit-burst} a positive integer.
        """
        self.assertConverts("2", "rate-limit", 2)
        self.assertConverts("0.5", "rate-limit", 0.5)
        self.assertRefuses("0", "rate-limit",
                           "expected a number > 0, got 0")
        self.assertRefuses("inf", "rate-limit",
                           "expected a number > 0, got inf")
        self.assertRefuses('"fast"', "rate-limit",
                           "expected a number > 0, got 'fast'")
        self.assertConverts("120", "rate-limit-burst", 120)
        self.assertRefuses("0", "rate-limit-burst",
                           "expected an integer >= 1, got 0")

    def test_max_payload(self):
        """
        C{max-payload} is 1..65535 bytes.
        """
        self.assertConverts("1024", "max-payload", 1024)
        self.assertConverts("65535", "max-payload", 65535)
        self.assertRefuses("65536", "max-payload",
                           "expected an integer 1..65535, got 65536")
        self.assertRefuses("0", "max-payload",
                           "expected an integer 1..65535, got 0")

    def test_interfaces(self):
        """
        C{interfaces} is a table of optional C{in} and C{out} names.
        """
        self.assertConverts('{ in = "eth0", out = "eth1" }', "interfaces",
                            {"in": "eth0", "out": "eth1"})
        self.assertConverts('{ out = "eth1" }', "interfaces", {"out": "eth1"})
        self.assertRefuses('"eth0"', "interfaces",
                           "expected a table such as { in = \"eth0\" }, "
                           "got 'eth0'")
        self.assertConfigError(
            '[host]\ninterfaces = { up = "eth0" }\n',
            " [host.interfaces] up: unknown key (expected in or out)")
        self.assertConfigError(
            '[host]\ninterfaces = { in = 1 }\n',
            " [host.interfaces] in: expected a string, got 1")

    def test_controllers(self):
        """
        C{[host.controllers]} maps decimal serials to (protocol, host,
        port); a bare address is UDP.
        """
        settings = self.load_section(
            '[host.controllers]\n'
            '405419896 = "udp::192.168.1.100:60000"\n'
            '303986753 = "tcp::192.168.1.101:60000"\n'
            '201020304 = "192.168.1.102:60001"\n')
        self.assertEqual(settings["controllers"], {
            405419896: ("udp", "192.168.1.100", 60000),
            303986753: ("tcp", "192.168.1.101", 60000),
            201020304: ("udp", "192.168.1.102", 60001),
        })

    def test_controllers_errors(self):
        """
        Bad serials and addresses are named under their table.
        """
        expected = "(expected udp::IP:PORT, tcp::IP:PORT or IP:PORT)"
        for address in ["192.168.1.300:60000", "udp::192.168.1.1",
                        "192.168.1.1:0", "192.168.1.1:65536",
                        "http::192.168.1.1:80", "host.local:60000"]:
            self.assertConfigError(
                '[host.controllers]\n405419896 = "%s"\n' % address,
                " [host.controllers] 405419896: invalid address %r %s"
                % (address, expected))
        self.assertConfigError(
            '[host.controllers]\n405419896 = 60000\n',
            " [host.controllers] 405419896: invalid address 60000 " + expected)
        for serial in ["0", "4294967296", "0x1234", "-1"]:
            self.assertConfigError(
                '[host.controllers]\n"%s" = "1.2.3.4:60000"\n' % serial,
                " [host.controllers] %s: invalid controller serial number "
                "(expected 1..4294967295)" % serial)
        self.assertRefuses('"x"', "controllers",
                           "expected a table of serial number = address, "
                           "got 'x'")

    def test_tables_merge(self):
        """
        C{[defaults.controllers]} and C{[defaults.interfaces]} merge with the
        section's, entry by entry, the section winning.
        """
        settings = self.load_section(
            '[defaults]\ninterfaces = { in = "eth0", out = "eth1" }\n'
            '[defaults.controllers]\n1 = "1.1.1.1:1"\n2 = "2.2.2.2:2"\n'
            '[host]\ninterfaces = { out = "wlan0" }\n'
            '[host.controllers]\n2 = "tcp::2.2.2.2:3"\n3 = "3.3.3.3:3"\n')
        self.assertEqual(settings["interfaces"], {"in": "eth0", "out": "wlan0"})
        self.assertEqual(settings["controllers"], {
            1: ("udp", "1.1.1.1", 1),
            2: ("tcp", "2.2.2.2", 3),
            3: ("udp", "3.3.3.3", 3),
        })

    def test_error_in_defaults(self):
        """
        A bad value in C{[defaults]} is named there.
        """
        self.assertConfigError(
            '[defaults]\nudp-timeout = "fast"\n[host]\n',
            " [defaults] udp-timeout: invalid duration 'fast' "
            "(expected e.g. 1s, 1250ms, 5m)")

    def test_other_sections_unchecked(self):
        """
        Sections other than the chosen one and C{[defaults]} are not read.
        """
        settings = self.load_section('[host]\ndebug = true\n'
                                     '[other]\nudp-timeout = "fast"\n')
        self.assertEqual(dict(settings), {"debug": True})


class WebSocketKeyTests(LoadTestsMixin, SynchronousTestCase):
    """
    The ws/ and wss/ keys: ws-origins, trusted-proxies, token-file, ws-ping.
    """

    def test_origins(self):
        """
        ws-origins is a list of origins, normalized; anything else is
        refused naming the key.
        """
        settings = self.load_section('[host]\nws-origins = ["HTTPS://App.example.com:443", "http://b:8080"]\n')
        self.assertEqual(settings["ws-origins"], ["https://app.example.com", "http://b:8080"])
        self.assertConfigError('[host]\nws-origins = ["https://a/path"]\n', " [host] ws-origins: invalid origin "
                               "'https://a/path' (expected SCHEME://HOST[:PORT], e.g. https://app.example.com)")
        self.assertConfigError('[host]\nws-origins = 5\n', " [host] ws-origins: expected a list of origins such as "
                               "https://app.example.com, got 5")

    def test_trustedProxies(self):
        """
        trusted-proxies is a list of addresses or CIDR blocks.
        """
        settings = self.load_section('[host]\ntrusted-proxies = ["127.0.0.1", "10.0.0.0/8"]\n')
        self.assertEqual(settings["trusted-proxies"], ["127.0.0.1/32", "10.0.0.0/8"])
        self.assertConfigError('[host]\ntrusted-proxies = ["proxy"]\n', " [host] trusted-proxies: invalid network "
                               "'proxy' (expected an address or a CIDR block, e.g. 127.0.0.1 or 10.0.0.0/8)")

    def test_pingAndToken(self):
        """
        ws-ping is a duration (0 for none); token-file a path.
        """
        settings = self.load_section('[host]\nws-ping = "10s"\ntoken-file = "/etc/uhppoted/token"\n')
        self.assertEqual((settings["ws-ping"], settings["token-file"]), (10.0, "/etc/uhppoted/token"))
        self.assertEqual(self.load_section('[host]\nws-ping = "0s"\n')["ws-ping"], 0.0)
        self.assertConfigError('[host]\nws-ping = "often"\n', " [host] ws-ping: invalid duration 'often' "
                               "(expected e.g. 1s, 1250ms, 5m)")
