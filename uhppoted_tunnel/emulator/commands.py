# -*- test-case-name: tests.unit.test_emulator_commands -*-
"""
The emulated controller's settings and their commands: door control and
passcodes, time profiles, the task list, interlock, anti-passback,
keypads, PC control, special events, the event store and its download
index, deleting every card and restoring the defaults.

L{SettingsCommands} is mixed into L{uhppoted_tunnel.emulator.Controller}:
each C{_name} method is the handler of the command named in
L{FUNCTIONS}; it reads the request, updates the state and fills in the
reply (the same contract as the controller's own handlers).
"""

import struct

from uhppoted_tunnel.emulator.codec import uint32

#: Written in requests that erase or reset something, as a safety catch.
MAGIC = 0x55AAAA55

#: The function codes handled here.
FUNCTIONS = {
    0x54: "delete-all-cards", 0x5C: "get-card-by-index",
    0x80: "set-door-control", 0x82: "get-door-control", 0x84: "set-antipassback", 0x86: "get-antipassback",
    0x88: "set-time-profile", 0x8A: "delete-all-time-profiles", 0x8C: "set-door-passcodes",
    0x8E: "record-special-events", 0x98: "get-time-profile",
    0xA0: "set-pc-control", 0xA2: "set-interlock", 0xA4: "activate-keypads", 0xA6: "clear-tasklist",
    0xA8: "add-task", 0xAC: "refresh-tasklist",
    0xB0: "get-event", 0xB2: "set-event-index", 0xB4: "get-event-index",
    0xC8: "restore-default-parameters",
}

#: Door control modes: normally open, normally closed, controlled.
DOOR_MODES = (1, 2, 3)

#: A door's control after a reset: controlled, unlocked for 5 seconds.
DEFAULT_DOOR = (3, 5)

#: The interlock modes a controller takes.
INTERLOCKS = (0, 1, 2, 3, 4, 8)

#: Anti-passback modes: 0 (off) to 4.
ANTIPASSBACK = range(0, 5)

#: A passcode is at most six digits; anything else is no passcode (0).
MAX_PASSCODE = 999999

#: Task types 0..12 (door controlled ... enable pushbutton).
TASK_TYPES = range(0, 13)

#: Events kept for get-event; older ones are forgotten.
MAX_EVENTS = 1024

#: get-event's index for "the latest event".
LATEST_EVENT = 0xFFFFFFFF

#: The settings L{SettingsCommands.reset} puts back.
SETTINGS = ("doors", "passcodes", "profiles", "tasks", "tasklist", "pc_control", "interlock", "antipassback",
            "keypads", "special_events")


class SettingsCommands:
    """
    The settings of an emulated controller and the commands that read and
    change them (see the module docstring).

    :ivar doors: door 1..4 -> C{(mode, delay)}.
    :ivar passcodes: door 1..4 -> four passcodes (0: none).
    :ivar profiles: profile id -> its 29-byte record (bytes 8..36 of set-time-profile).
    :ivar tasks: the 20-byte task records added since the last refresh or clear.
    :ivar tasklist: the task records in force (after refresh-tasklist).
    :ivar events: event index -> its 16-byte record, the last L{MAX_EVENTS}.
    :ivar read_index: the download index (set-event-index, get-event-index).
    """

    __slots__ = ()

    def reset(self):
        """
        Put every setting back as it leaves the factory; cards, events and
        the network settings stay.
        """
        self.doors = dict.fromkeys(range(1, 5), DEFAULT_DOOR)
        self.passcodes = dict.fromkeys(range(1, 5), (0, 0, 0, 0))
        self.profiles = {}
        self.tasks = []
        self.tasklist = []
        self.pc_control = False
        self.interlock = 0
        self.antipassback = 0
        self.keypads = (False, False, False, False)
        self.special_events = False

    def remember(self, index, record):
        """
        Keep an event for get-event, forgetting the oldest beyond L{MAX_EVENTS}.
        """
        self.events[index] = bytes(record)
        while len(self.events) > MAX_EVENTS:
            del self.events[next(iter(self.events))]

    # cards

    def _delete_all_cards(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.cards.clear()
            reply[8] = True

    def _get_card_by_index(self, request, reply, now):
        # 1-based, in the order the cards were put; out of range: card 0, "not found"
        index = uint32(request, 8)
        cards = list(self.cards.values())
        if 1 <= index <= len(cards):
            reply[8:28] = cards[index - 1]

    # doors

    def _get_door_control(self, request, reply, now):
        door = request[8]
        reply[8] = door
        if door in self.doors:
            reply[9:11] = bytes(self.doors[door])

    def _set_door_control(self, request, reply, now):
        door, mode, delay = request[8:11]
        if door in self.doors and mode in DOOR_MODES:
            self.doors[door] = (mode, delay)
        reply[8] = door
        if door in self.doors:
            reply[9:11] = bytes(self.doors[door])

    def _set_door_passcodes(self, request, reply, now):
        door = request[8]
        if door in self.passcodes:
            codes = struct.unpack_from("<4I", request, 12)
            self.passcodes[door] = tuple(code if code <= MAX_PASSCODE else 0 for code in codes)
            reply[8] = True

    def _set_interlock(self, request, reply, now):
        if request[8] in INTERLOCKS:
            self.interlock = request[8]
            reply[8] = True

    def _get_antipassback(self, request, reply, now):
        reply[8] = self.antipassback

    def _set_antipassback(self, request, reply, now):
        if request[8] in ANTIPASSBACK:
            self.antipassback = request[8]
            reply[8] = True

    def _activate_keypads(self, request, reply, now):
        self.keypads = tuple(bool(b) for b in request[8:12])
        reply[8] = True

    def _set_pc_control(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.pc_control = bool(request[12])
            reply[8] = True

    # time profiles and tasks

    def _get_time_profile(self, request, reply, now):
        # an unknown profile leaves the record zero: profile 0, "not found"
        record = self.profiles.get(request[8])
        if record is not None:
            reply[8:37] = record

    def _set_time_profile(self, request, reply, now):
        profile = request[8]
        if 2 <= profile <= 254:
            self.profiles[profile] = bytes(request[8:37])
            reply[8] = True

    def _delete_all_time_profiles(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.profiles.clear()
            reply[8] = True

    def _add_task(self, request, reply, now):
        if 1 <= request[25] <= 4 and request[26] in TASK_TYPES:
            self.tasks.append(bytes(request[8:28]))
            reply[8] = True

    def _refresh_tasklist(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.tasklist = self.tasklist + self.tasks
            self.tasks = []
            reply[8] = True

    def _clear_tasklist(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.tasks = []
            self.tasklist = []
            reply[8] = True

    # events

    def _get_event(self, request, reply, now):
        # an event the controller does not have leaves the record zero: index 0, "not found"
        index = uint32(request, 8)
        if index == LATEST_EVENT:
            index = self.event_index
        record = self.events.get(index)
        if record is not None:
            struct.pack_into("<I", reply, 8, index)
            reply[12:28] = record

    def _get_event_index(self, request, reply, now):
        struct.pack_into("<I", reply, 8, self.read_index)

    def _set_event_index(self, request, reply, now):
        if uint32(request, 12) == MAGIC:
            self.read_index = uint32(request, 8)
            reply[8] = True

    def _record_special_events(self, request, reply, now):
        self.special_events = bool(request[8])
        reply[8] = True

    # everything

    def _restore_default_parameters(self, request, reply, now):
        if uint32(request, 8) == MAGIC:
            self.reset()
            reply[8] = True
