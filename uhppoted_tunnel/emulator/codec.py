# -*- test-case-name: tests.unit.test_emulator -*-
"""
The emulator's packet fields: little-endian integers and BCD dates and
times, as UHPPOTE controllers write them.
"""

import struct


def uint32(packet, offset):
    """:return: the little-endian uint32 at C{offset}."""
    return struct.unpack_from("<I", packet, offset)[0]


def bcd_date(d):
    """Encode a date as 4 BCD bytes, YYYYMMDD (strftime would not pad years before 1000)."""
    return bytes.fromhex(f"{d.year:04d}{d.month:02d}{d.day:02d}")


def bcd_time(t):
    """Encode a time of day as 3 BCD bytes, HHmmss."""
    return bytes.fromhex(f"{t.hour:02d}{t.minute:02d}{t.second:02d}")


def bcd_datetime(t):
    """Encode a datetime as 7 BCD bytes, YYYYMMDDHHmmss."""
    return bcd_date(t) + bcd_time(t)
