"""
The loop transport's option, C{--loop-greeting} (TOML C{loop-greeting}).
"""

from uhppoted_tunnel.core.declare import Option

#: the longest greeting C{check} accepts
LONGEST = 32


def short(greeting, settings):
    """
    C{check}'s validation: a greeting fits on a log line.
    """
    if len(greeting) > LONGEST:
        return "a greeting of {} characters is over {}: shorten it".format(len(greeting), LONGEST)
    return None


OPTIONS = (
    Option("loop-greeting", "What loop/ ends say as they start (default hello).", default="hello", validate=short),
)
