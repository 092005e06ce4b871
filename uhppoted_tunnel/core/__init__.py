"""
Pure logic, no I/O: the frame codec, rate limits and throttles, the router
and its reply table, the relays, events, UHPPOTE packets, deadlines,
addresses and durations. Time comes in as an C{IReactorTime}.
"""
