# -*- test-case-name: tests.unit.test_packets -*-
"""
What the tunnel knows of UHPPOTE packets, in one place.

A UHPPOTE packet is 64 bytes: byte 0 is the start byte (0x17; events from
v6.62 firmware start 0x19), byte 1 the function code, bytes 4..7 the
controller serial, little-endian (0 in a broadcast, which every controller
answers). A reply repeats the function code of its request and carries the
answering controller's own serial. An event is a get-status packet pushed
by a controller, with a rising event index at bytes 8..11.

The relay is content-agnostic: what these functions do not recognise is
relayed untouched.
"""

import struct

#: A UHPPOTE packet is this many bytes.
PACKET_SIZE = 64

#: The start byte of a request or reply.
SOM = 0x17
#: The start bytes of an event (0x19 from v6.62 firmware).
EVENT_SOM = (0x17, 0x19)

#: get-status, which is also the event packet.
GET_STATUS = 0x20
#: set-ip, which controllers never answer.
SET_IP = 0x96

_SERIAL_INDEX = struct.Struct("<II")


def request_key(packet):
    """
    What a UHPPOTE reply repeats of its request: C{(function, serial)}.

    :param packet: a request.
    :return: the key, or C{None} for a packet too short to be UHPPOTE.
    """
    if len(packet) < 8:
        return None
    return (packet[1], int.from_bytes(packet[4:8], "little"))


def is_unicast(packet):
    """
    True for a UHPPOTE request addressed to one controller (a non-zero
    serial), which is answered once; False for a broadcast or a packet not
    recognised, whose replies may be several.
    """
    return len(packet) >= 8 and packet[4:8] != b"\0\0\0\0"


def controller_serial(packet):
    """
    :return: the controller serial of a UHPPOTE request, or C{None} for a
        packet that is not one.
    """
    if len(packet) != PACKET_SIZE or packet[0] != SOM:
        return None
    return int.from_bytes(packet[4:8], "little")


def event_key(packet):
    """
    The controller serial and event index of an event packet.

    :param packet: any packet.
    :return: C{(serial, index)}, or C{None} for anything that is not
        recognisably an event.
    """
    if len(packet) != PACKET_SIZE or packet[1] != GET_STATUS or packet[0] not in EVENT_SOM:
        return None
    serial, index = _SERIAL_INDEX.unpack_from(packet, 4)
    if index == 0:
        return None
    return serial, index


def hexdump(data, indent=34):
    """
    Format bytes as Go's C{hex.Dump} does, without its ASCII column.

    :param data: the bytes to show.
    :param indent: how many spaces begin each line; 34 puts the dump under
        the message of a console line.
    :return: one line per 16 bytes, C{"%08x  "} offset then two groups of 8
        hex bytes, joined by newlines, with no trailing space or newline.
    """
    margin = " " * indent
    return "\n".join(
        "%s%08x  %s" % (
            margin,
            offset,
            "  ".join(
                group.hex(" ")
                for group in (data[offset:offset + 8],
                              data[offset + 8:offset + 16])
                if group
            ),
        )
        for offset in range(0, len(data), 16)
    )
