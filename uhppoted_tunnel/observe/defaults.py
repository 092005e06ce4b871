# -*- test-case-name: tests.unit.test_options -*-
"""
The defaults of the status page and the web servers' settings, apart from
them so that the options can name them without importing C{twisted.web}
(a tunnel without C{--metrics} or an http/ end never does).
"""

#: Concurrent status streams allowed by default (C{--max-status-streams}).
DEFAULT_MAX_STREAMS = 16

#: How long a request's head and body may take to arrive, all told: a
#: UHPPOTE request is a few hundred bytes, sent at once.
DEFAULT_REQUEST_TIMEOUT = 10.0
