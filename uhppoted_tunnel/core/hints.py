# -*- test-case-name: tests.unit.test_hints -*-
"""
"Did you mean" hints: the valid word closest to a misspelt one (a TOML
key, a flag, a connector kind), for messages that point to the fix.
"""


#: How alike two words must be (C{difflib} ratio) to be suggested.
CUTOFF = 0.6


def closest(word, choices):
    """
    :return: the choice closest to C{word}, or C{None} when none is close.
    """
    import difflib  # only when there is something to suggest

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def did_you_mean(word, choices, form="'{}'"):
    """
    A hint naming the choice closest to a misspelt C{word}.

    :param choices: the valid words.
    :param form: how the choice is written (C{"'{}'"}, C{"--{}"}).
    :return: C{" (did you mean 'udp-timeout'?)"}, or C{""} when nothing
        is close.
    """
    found = closest(word, choices)
    return " (did you mean {}?)".format(form.format(found)) if found is not None else ""


def closest_prefix(text, prefixes):
    """
    The prefix a string misspells at its start (C{udp/lisen:0.0.0.0:1}
    misspells C{udp/listen:}), comparing each prefix with as much of the
    string.

    :return: the prefix, or C{None} when none is close.
    """
    import difflib  # only when there is something to suggest

    best, score = None, CUTOFF
    for prefix in prefixes:
        head = text.split(":", 1)[0] + ":" if prefix.endswith(":") else text[:len(prefix)]
        ratio = difflib.SequenceMatcher(None, head, prefix).ratio()
        if ratio > score:
            best, score = prefix, ratio
    return best
