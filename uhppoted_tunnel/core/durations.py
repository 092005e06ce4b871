# -*- test-case-name: tests.unit.test_config -*-
"""
Go durations (C{"1s"}, C{"1250ms"}, C{"5m"}, C{"1h30m"}), as the Go tunnel's
flags and TOML file write them.
"""

import re

# Go accepts both the micro sign (U+00B5, which it writes) and Greek mu.
_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3,
          "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION = re.compile(r"\+?(?:%s)+" % (_PART,))


def parse_duration(text):
    """
    Parse a duration in Go's C{time.ParseDuration} syntax.

    :param text: e.g. C{"1s"}, C{"1250ms"}, C{"1h30m"}, C{"1.5s"}, C{"0"}.
    :return: the duration in seconds, truncated to whole nanoseconds as Go
        does.
    :raise ValueError: if C{text} is not a duration, or is negative.
    """
    if not isinstance(text, str):
        raise ValueError("invalid duration %r (expected a string such as '5s')"
                         % (text,))
    if text.startswith("-"):
        raise ValueError("invalid duration %r (must not be negative)" % (text,))
    if text in ("0", "+0"):
        return 0.0
    if not _DURATION.fullmatch(text):
        raise ValueError("invalid duration %r (expected e.g. 1s, 1250ms, 5m)"
                         % (text,))
    parts = [_decimal(number) + (_UNITS[unit],) for number, unit in re.findall(_PART, text)]
    # exactly, in integers (C{fractions} costs a tunnel half 0.5 MiB)
    places = max(digits for _, digits, _ in parts)
    nanoseconds = sum(value * unit * 10**(places - digits) for value, digits, unit in parts) // 10**places
    if nanoseconds >= 2**63:
        raise ValueError("invalid duration %r (out of range)" % (text,))
    # an integer division is correctly rounded
    return nanoseconds / 10**9


def _decimal(number):
    """
    :param number: decimal digits with an optional point, e.g. C{"1.25"}.
    :return: C{(value, digits)}: C{number} is C{value / 10**digits}.
    """
    whole, _, decimals = number.partition(".")
    return int(whole + decimals or "0"), len(decimals)


def _fraction(value, digits):
    whole, rest = divmod(value, 10**digits)
    decimals = ("%0*d" % (digits, rest)).rstrip("0")
    return "%d.%s" % (whole, decimals) if decimals else "%d" % (whole,)


def format_duration(seconds):
    """
    Format a duration as Go's C{time.Duration.String} does.

    :param seconds: the duration, e.g. C{1.25} or C{300}.
    :return: e.g. C{"1.25s"}, C{"5m0s"}, C{"1h30m0s"}, C{"300\u00b5s"}.
    """
    # exactly: a float's product with 10**9 rounds, and long durations lost nanoseconds
    numerator, denominator = seconds.as_integer_ratio()
    nanoseconds, rest = divmod(numerator * 10**9, denominator)
    # rounded half to even, as round() would
    if 2 * rest > denominator or (2 * rest == denominator and nanoseconds % 2):
        nanoseconds += 1
    sign, nanoseconds = "-" if nanoseconds < 0 else "", abs(nanoseconds)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 10**3:
        return "%s%dns" % (sign, nanoseconds)
    if nanoseconds < 10**6:
        return sign + _fraction(nanoseconds, 3) + "\u00b5s"
    if nanoseconds < 10**9:
        return sign + _fraction(nanoseconds, 6) + "ms"
    minutes, rest = divmod(nanoseconds, 60 * 10**9)
    hours, minutes = divmod(minutes, 60)
    text = _fraction(rest, 9) + "s"
    if hours or minutes:
        text = "%dm%s" % (minutes, text)
    return sign + ("%dh" % hours if hours else "") + text
