# -*- test-case-name: tests.unit.test_lifecycle -*-
"""
How an end says that it is listening, or that it cannot go on: written
once for every end (L{uhppoted_tunnel.interfaces.IEnd}).

An end that cannot start (a port in use) or cannot go on (a client out of
retries) calls L{EndLifecycle.failed} with a one-line message naming the
address: the message is logged as an error, every L{whenListening} still
waiting fails with L{EndFailed}, and every L{whenFailed} fires with it.
Nothing is raised out of C{startService}, so the console script and
twistd see the same thing.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure


class EndFailed(Exception):
    """
    An end could not start or could not go on; the message says why, in
    one line naming the address.
    """


class EndLifecycle:
    """
    A mixin for an end (a C{Service}): L{whenListening} and L{whenFailed},
    and what the end calls to settle them.
    """

    #: C{(port,)} once listening, the message once failed, and who waits
    _end_listening = None
    _end_failure = None
    _listening_waiters = ()
    _failed_waiters = ()

    def whenListening(self):
        """
        :return: a Deferred that fires once the end is listening (with its
            listening port, whose C{getHost()} tells the real port of a
            C{:0} address) or, for an end that dials or only sends, once it
            has started (with C{None}); it fails with L{EndFailed} if the
            end could not start.
        """
        if self._end_failure is not None:
            return fail(EndFailed(self._end_failure))
        if self._end_listening is not None:
            return succeed(self._end_listening[0])
        d = Deferred()
        self._listening_waiters = self._listening_waiters + (d,)
        return d

    def whenFailed(self):
        """
        :return: a Deferred that fires with a one-line message if the end
            cannot start or cannot go on; it never fires for an end that
            stops normally.
        """
        if self._end_failure is not None:
            return succeed(self._end_failure)
        d = Deferred()
        self._failed_waiters = self._failed_waiters + (d,)
        return d

    def listening(self, port=None):
        """
        The end is listening (or, for a client, has started).

        :param port: the listening port, or C{None}.
        """
        if self._end_listening is not None or self._end_failure is not None:
            return
        self._end_listening = (port,)
        waiting, self._listening_waiters = self._listening_waiters, ()
        for d in waiting:
            d.callback(port)

    def failed(self, log_format, **fields):
        """
        The end cannot start or cannot go on: log an error with its fields
        and tell whoever waits the formatted message. Only the first
        failure counts.

        :param log_format: a C{twisted.logger} format naming the address
            and the reason, e.g. C{"cannot listen on {address}: {reason}"}.
        :param fields: its fields.
        """
        if self._end_failure is not None:
            return
        message = self._end_failure = log_format.format(**fields)
        self.log.error(log_format, **fields)
        waiting, self._listening_waiters = self._listening_waiters, ()
        for d in waiting:
            d.errback(Failure(EndFailed(message)))
        waiting, self._failed_waiters = self._failed_waiters, ()
        for d in waiting:
            d.callback(message)

    def cannotListen(self, address, failure):
        """
        A listen failed: one line naming the address and OpenSSL's, the
        kernel's or the parser's reason.

        :param address: the address as the user wrote it.
        :param failure: the L{Failure} or exception.
        """
        reason = failure.getErrorMessage() if isinstance(failure, Failure) else str(failure)
        self.failed("cannot listen on {address}: {reason}", address=address, reason=reason)
