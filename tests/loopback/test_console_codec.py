"""
The console's JavaScript protocol code (C{observe/assets/uhppote.js}) run
under node, against the C{uhppoted} Python package: every command's
request is byte for byte what C{uhppoted.encode} makes from the same
values, and replies from the emulator decode to what C{uhppoted.decode}
reads.
"""

import datetime
import ipaddress
import json
import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase
from uhppoted import encode

from tests.tools import require
from uhppoted_tunnel.emulator import Controller

CODEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "uhppoted_tunnel", "observe",
                     "assets", "uhppote.js")

#: Reads [[command, values], ...] as JSON on stdin and prints each encoded request in hex, or
#: [[command, [bytes]], ...] with --decode and prints each decoded reply as JSON.
DRIVER = """
var codec = require(process.argv[1]);
var input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
var out = input.map(function (job) {
  if (process.argv[2] === '--decode') { return codec.decode(job[0], job[1]); }
  return Buffer.from(codec.encode(job[0], job[1])).toString('hex');
});
process.stdout.write(JSON.stringify(out));
"""

S = 405419896
D1 = datetime.date(2025, 1, 2)
D2 = datetime.date(2025, 12, 31)
T = datetime.datetime(2025, 3, 4, 5, 6, 7)
IP = ipaddress.IPv4Address
WEEK = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _week(days):
    return {day: on for day, on in zip(WEEK, days)}


DAYS = (True, False, True, False, True, True, False)

#: command, the console's values, uhppoted's packet
CASES = [
    ("get-all-controllers", {}, encode.get_controller_request(0)),
    ("get-controller", {"controller": S}, encode.get_controller_request(S)),
    ("set-IP", {"controller": S, "address": "10.0.0.5", "netmask": "255.255.0.0", "gateway": "10.0.0.1"},
     encode.set_ip_request(S, IP("10.0.0.5"), IP("255.255.0.0"), IP("10.0.0.1"))),
    ("get-listener", {"controller": S}, encode.get_listener_request(S)),
    ("set-listener", {"controller": S, "address": "192.168.1.100", "port": "60001", "interval": "15"},
     encode.set_listener_request(S, IP("192.168.1.100"), 60001, 15)),
    ("get-time", {"controller": S}, encode.get_time_request(S)),
    ("set-time", {"controller": S, "datetime": "2025-03-04 05:06:07"}, encode.set_time_request(S, T)),
    ("get-door-control", {"controller": S, "door": "3"}, encode.get_door_control_request(S, 3)),
    ("set-door-control", {"controller": S, "door": "2", "mode": "1", "delay": "9"},
     encode.set_door_control_request(S, 2, 1, 9)),
    ("set-door-passcodes", {"controller": S, "door": "4", "passcode1": "12345", "passcode2": "999999",
                            "passcode3": "0", "passcode4": "7"},
     encode.set_door_passcodes_request(S, 4, 12345, 999999, 0, 7)),
    ("open-door", {"controller": S, "door": "1"}, encode.open_door_request(S, 1)),
    ("get-status", {"controller": S}, encode.get_status_request(S)),
    ("get-cards", {"controller": S}, encode.get_cards_request(S)),
    ("get-card", {"controller": S, "card": "10058400"}, encode.get_card_request(S, 10058400)),
    ("get-card-by-index", {"controller": S, "index": "3"}, encode.get_card_by_index_request(S, 3)),
    ("put-card", {"controller": S, "card": "10058400", "from": "2025-01-02", "until": "2025-12-31", "door1": "1",
                  "door2": "0", "door3": "29", "door4": "1", "pin": "7531"},
     encode.put_card_request(S, 10058400, D1, D2, 1, 0, 29, 1, 7531)),
    ("delete-card", {"controller": S, "card": "10058400"}, encode.delete_card_request(S, 10058400)),
    ("delete-all-cards", {"controller": S}, encode.delete_cards_request(S)),
    ("get-event", {"controller": S, "index": "4294967295"}, encode.get_event_request(S, 0xFFFFFFFF)),
    ("get-event-index", {"controller": S}, encode.get_event_index_request(S)),
    ("set-event-index", {"controller": S, "index": "17"}, encode.set_event_index_request(S, 17)),
    ("record-special-events", {"controller": S, "enable": True}, encode.record_special_events_request(S, True)),
    ("get-time-profile", {"controller": S, "profile": "29"}, encode.get_time_profile_request(S, 29)),
    ("set-time-profile", {"controller": S, "profile": "29", "from": "2025-01-02", "until": "2025-12-31",
                          **_week(DAYS), "segment1start": "08:30", "segment1end": "11:45",
                          "segment2start": "13:15", "segment2end": "17:00", "segment3start": "00:00",
                          "segment3end": "00:00", "linked": "3"},
     encode.set_time_profile_request(S, 29, D1, D2, *DAYS, datetime.time(8, 30), datetime.time(11, 45),
                                     datetime.time(13, 15), datetime.time(17, 0), None, None, 3)),
    ("delete-all-time-profiles", {"controller": S}, encode.delete_all_time_profiles_request(S)),
    ("add-task", {"controller": S, "from": "2025-01-02", "until": "2025-12-31", **_week(DAYS), "at": "08:45",
                  "door": "3", "task": "4", "cards": "2"},
     encode.add_task_request(S, D1, D2, *DAYS, datetime.time(8, 45), 3, 4, 2)),
    ("refresh-tasklist", {"controller": S}, encode.refresh_tasklist_request(S)),
    ("clear-tasklist", {"controller": S}, encode.clear_tasklist_request(S)),
    ("set-pc-control", {"controller": S, "enable": True}, encode.set_pc_control_request(S, True)),
    ("set-interlock", {"controller": S, "interlock": "3"}, encode.set_interlock_request(S, 3)),
    ("get-antipassback", {"controller": S}, encode.get_antipassback_request(S)),
    ("set-antipassback", {"controller": S, "antipassback": "2"}, encode.set_antipassback_request(S, 2)),
    ("activate-keypads", {"controller": S, "reader1": True, "reader2": False, "reader3": True, "reader4": True},
     encode.activate_keypads_request(S, True, False, True, True)),
    ("restore-default-parameters", {"controller": S}, encode.restore_default_parameters_request(S)),
]


def node(jobs, *args):
    """
    Run the driver under node on C{jobs}; return what it printed, parsed.
    """
    path = require("node", "nodejs")
    result = subprocess.run([path, "-e", DRIVER, os.path.abspath(CODEC)] + list(args), input=json.dumps(jobs),
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError("node failed: " + result.stderr)
    return json.loads(result.stdout)


class EncodeTests(SynchronousTestCase):
    """
    The console encodes every command as C{uhppoted} does.
    """

    def test_everyCommand(self):
        """
        Each of the 34 commands, with values in every field, encodes to the
        bytes C{uhppoted.encode} makes.
        """
        self.assertEqual(len(CASES), 34)
        got = node([[name, {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                            for k, v in values.items()}] for name, values, _ in CASES])
        for (name, _, expected), packet in zip(CASES, got):
            self.assertEqual(packet, bytes(expected).hex(), name)

    def test_commandNames(self):
        """
        The console lists the commands by their uhppote-cli names, in the
        Go console's order.
        """
        names = subprocess.run(
            [require("node", "nodejs"), "-e",
             "process.stdout.write(JSON.stringify(require(process.argv[1]).COMMANDS.map(function (c) "
             "{ return c.name; })))", os.path.abspath(CODEC)], capture_output=True, text=True, timeout=60).stdout
        self.assertEqual(json.loads(names), [name for name, _, _ in CASES])


class DecodeTests(SynchronousTestCase):
    """
    The console decodes the emulator's replies as C{uhppoted.decode} reads them.
    """

    def test_replies(self):
        """
        get-controller, get-time, get-card and get-time-profile replies show
        their fields as text, dates as YYYY-MM-DD HH:MM:SS; a card the
        controller lacks is said to be missing.
        """
        now = datetime.datetime(2025, 3, 4, 5, 6, 7)
        c = Controller(S, address="192.168.1.125")
        c.handle(bytes(encode.put_card_request(S, 8165538, D1, D2, 1, 0, 29, 1, 7531)), now)
        c.handle(bytes(encode.set_time_profile_request(S, 29, D1, D2, *DAYS, datetime.time(8, 30),
                                                       datetime.time(11, 45), None, None, None, None, 0)), now)
        jobs = [
            ["get-controller", list(c.handle(bytes(encode.get_controller_request(S)), now))],
            ["get-time", list(c.handle(bytes(encode.get_time_request(S)), now))],
            ["get-card", list(c.handle(bytes(encode.get_card_request(S, 8165538)), now))],
            ["get-card", list(c.handle(bytes(encode.get_card_request(S, 1)), now))],
            ["get-time-profile", list(c.handle(bytes(encode.get_time_profile_request(S, 29)), now))],
        ]
        controller, time, card, missing, profile = [dict(map(tuple, r["fields"])) | {"missing": r["missing"]}
                                                    for r in node(jobs, "--decode")]
        self.assertEqual((controller["Controller"], controller["IP address"], controller["Firmware version"],
                          controller["Firmware date"], controller["MAC address"]),
                         (str(S), "192.168.1.125", "v8.92", "2018-11-05", "00:12:23:34:45:56"))
        self.assertEqual(time["Date and time"], "2025-03-04 05:06:07")
        self.assertEqual((card["Card number"], card["Valid from"], card["Valid until"], card["Door 3"], card["PIN"],
                          card["missing"]), ("8165538", "2025-01-02", "2025-12-31", "time profile 29", "7531", None))
        self.assertEqual(missing["missing"], "The controller answered: card not found.")
        self.assertEqual((profile["Profile"], profile["Monday"], profile["Tuesday"], profile["Segment 1"]),
                         ("29", "yes", "no", "08:30 to 11:45"))

    def test_wrongReply(self):
        """
        A reply for another function is refused in words.
        """
        path = require("node", "nodejs")
        script = ("var c = require(process.argv[1]); var p = new Uint8Array(64); p[0] = 0x17; p[1] = 0x32;"
                  "try { c.decode('get-cards', p); } catch (e) { process.stdout.write(e.message); }")
        result = subprocess.run([path, "-e", script, os.path.abspath(CODEC)], capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.stdout, "The reply is for function 0x32, not get-cards (0x58).")
