# -*- test-case-name: tests.unit.test_config -*-
"""
Converters for setting values: each takes a value as the TOML file types
it (or as the command line reads it) and returns it converted, or raises
C{ValueError} with a message naming what was expected. The TOML file
(L{uhppoted_tunnel.app.config}) and every option declaration
(L{uhppoted_tunnel.core.declare.Option}) use them; pure, no I/O.
"""

import math

from uhppoted_tunnel.core.durations import parse_duration


class NestedValueError(ValueError):
    """
    A bad entry, named by its C{key}, inside a table-valued key.
    """

    def __init__(self, key, message):
        ValueError.__init__(self, message)
        self.key = key


def shown(value, limit=60):
    """
    C{repr(value)} for a message: one line, shortened past C{limit}
    characters.
    """
    try:
        text = repr(value)
    except RecursionError:
        text = "a value nested too deeply"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check(kind, accept, convert=lambda value: value):
    """
    :param kind: how a message names what is expected.
    :param accept: C{value -> bool}, whether a TOML value is acceptable.
    :param convert: C{value -> converted}, for acceptable values.
    :return: a converter raising L{ValueError} "expected KIND, got VALUE".
    """

    def converter(value):
        if not accept(value):
            text = str(value).lower() if type(value) is bool else shown(value)
            raise ValueError("expected %s, got %s" % (kind, text))
        return convert(value)

    return converter


def integer(low, high=None):
    """
    :param low: the smallest value allowed.
    :param high: the largest value allowed, or L{None}.
    :return: a converter for TOML integers in that range.
    """
    bounds = ">= %d" % low if high is None else "%d..%d" % (low, high)
    return check("an integer " + bounds, lambda value: type(value) is int
                 and low <= value <= (value if high is None else high))


def duration(positive=False):
    """
    :param positive: whether zero is refused.
    :return: a converter for Go duration strings, giving seconds.
    """

    def convert(value):
        seconds = parse_duration(value)
        if positive and seconds == 0:
            raise ValueError("invalid duration %r (must be > 0)" % (value,))
        return seconds

    return convert


string = check("a string", lambda value: type(value) is str)
boolean = check("true or false", lambda value: type(value) is bool)
positive_number = check("a number > 0", lambda value: type(value) in (
    int, float) and 0 < value < math.inf)


def table(kind, entry):
    """
    :param kind: how a message names the table expected.
    :param entry: C{(key, value) -> (key, converted)}, raising L{ValueError}.
    :return: a converter for TOML tables, naming a bad entry's key.
    """

    def convert(value):
        result = {}
        for key, item in value.items():
            try:
                result.update([entry(key, item)])
            except ValueError as e:
                raise NestedValueError(key, str(e)) from None
        return result

    return check(kind, lambda value: type(value) is dict, convert)


def list_of(kind, convert):
    """
    :param kind: how a message names one entry.
    :param convert: C{entry -> converted}, raising L{ValueError}.
    :return: a converter for a TOML list (or a string of comma-separated
        entries, as the command line writes them) to a list.
    """

    def converter(value):
        if type(value) is str:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if type(value) is not list or not all(type(item) is str for item in value):
            raise ValueError("expected a list of %s, got %s" % (kind, shown(value)))
        return [convert(item) for item in value]

    return converter


def read_integer(text):
    """
    Command-line text read as the TOML file would type an integer.
    """
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected an integer, got {!r}".format(text)) from None


def read_number(text):
    """
    Command-line text read as the TOML file would type a number.
    """
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number, got {!r}".format(text)) from None
