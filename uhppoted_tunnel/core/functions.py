# -*- test-case-name: tests.unit.test_accounting -*-
"""
What a request is, in words an operator knows: the function by its
C{uhppote-cli} name (from the function code, the packet's second byte)
and the controller it is for (or a broadcast), for log lines.
"""

from uhppoted_tunnel.core.packets import request_key

#: Function code -> the C{uhppote-cli} command that sends it.
FUNCTIONS = {
    0x20: "get-status", 0x30: "set-time", 0x32: "get-time", 0x40: "open-door",
    0x50: "put-card", 0x52: "delete-card", 0x54: "delete-all-cards", 0x58: "get-cards", 0x5A: "get-card",
    0x5C: "get-card-by-index", 0x80: "set-door-control", 0x82: "get-door-control", 0x84: "set-antipassback",
    0x86: "get-antipassback", 0x88: "set-time-profile", 0x8A: "clear-time-profiles", 0x8C: "set-door-passcodes",
    0x8E: "record-special-events", 0x90: "set-listener", 0x92: "get-listener", 0x94: "get-device",
    0x96: "set-address", 0x98: "get-time-profile", 0xA0: "set-pc-control", 0xA2: "set-interlock",
    0xA4: "activate-keypads", 0xA6: "clear-task-list", 0xA8: "add-task", 0xAC: "refresh-tasklist",
    0xB0: "get-event", 0xB2: "set-event-index", 0xB4: "get-event-index", 0xC8: "restore-default-parameters",
}


def function_name(code):
    """
    :return: the C{uhppote-cli} name of a function code, or C{function
        0xNN} for one not known.
    """
    name = FUNCTIONS.get(code)
    return name if name is not None else "function 0x{:02x}".format(code)


def describe(packet):
    """
    A request in words: C{get-status for controller 405419896},
    C{get-devices (broadcast)}, or C{a 5-byte packet} for one that is not
    UHPPOTE.
    """
    key = request_key(packet)
    if key is None:
        return "a {}-byte packet".format(len(packet))
    return describe_key(key)


def describe_key(key):
    """
    L{describe} for a request's C{(function, serial)} key
    (L{request_key}; C{None} for a packet that is not UHPPOTE).
    """
    if key is None:
        return "a request that is not UHPPOTE"
    code, serial = key
    if serial == 0:
        return "get-devices (broadcast)" if code == 0x94 else "{} (broadcast)".format(function_name(code))
    return "{} for controller {}".format(function_name(code), serial)
