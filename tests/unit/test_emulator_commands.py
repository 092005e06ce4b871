"""
Tests for L{uhppoted_tunnel.emulator.commands}: the settings commands the
controller console sends, encoded and decoded with the C{uhppoted} client
library.
"""

import datetime

from twisted.trial.unittest import SynchronousTestCase
from uhppoted import decode, encode

from uhppoted_tunnel.emulator import FUNCTIONS, Controller
from uhppoted_tunnel.emulator.commands import MAX_EVENTS

A = 405419896
NOW = datetime.datetime(2024, 6, 1, 12, 30, 15)
DAY = datetime.date(2024, 1, 1)
END = datetime.date(2024, 12, 31)


class SettingsCommandsTests(SynchronousTestCase):
    """
    An emulated controller keeps its settings in memory and reports them.
    """

    def setUp(self):
        self.controller = Controller(A)

    def ask(self, request, decoder):
        reply = self.controller.handle(bytes(request), NOW)
        self.assertIsNotNone(reply)
        return decoder(reply)

    def test_everyConsoleCommandIsKnown(self):
        """
        The emulator knows the function code of each of the console's commands.
        """
        names = set(FUNCTIONS.values())
        for name in ("get-door-control", "set-door-control", "set-door-passcodes", "get-card-by-index",
                     "delete-all-cards", "get-event", "get-event-index", "set-event-index", "record-special-events",
                     "get-time-profile", "set-time-profile", "delete-all-time-profiles", "add-task",
                     "refresh-tasklist", "clear-tasklist", "set-pc-control", "set-interlock", "get-antipassback",
                     "set-antipassback", "activate-keypads", "restore-default-parameters"):
            self.assertIn(name, names)

    def test_doorControl(self):
        """
        Doors start controlled with a 5 s delay; set-door-control changes
        one door, which get-door-control then reports; a bad mode is refused.
        """
        got = self.ask(encode.get_door_control_request(A, 2), decode.get_door_control_response)
        self.assertEqual((got.door, got.mode, got.delay), (2, 3, 5))
        got = self.ask(encode.set_door_control_request(A, 2, 1, 9), decode.set_door_control_response)
        self.assertEqual((got.door, got.mode, got.delay), (2, 1, 9))
        self.ask(encode.set_door_control_request(A, 2, 7, 1), decode.set_door_control_response)
        got = self.ask(encode.get_door_control_request(A, 2), decode.get_door_control_response)
        self.assertEqual((got.mode, got.delay), (1, 9))

    def test_passcodes(self):
        """
        set-door-passcodes keeps up to four six-digit codes for a door; a
        door out of range is refused.
        """
        ok = self.ask(encode.set_door_passcodes_request(A, 3, 12345, 999999, 1000000, 0),
                      decode.set_door_passcodes_response)
        self.assertTrue(ok.ok)
        self.assertEqual(self.controller.passcodes[3], (12345, 999999, 0, 0))
        refused = self.ask(encode.set_door_passcodes_request(A, 5, 1, 2, 3, 4), decode.set_door_passcodes_response)
        self.assertFalse(refused.ok)

    def test_cardsByIndexAndDeleteAll(self):
        """
        get-card-by-index reads the cards in the order put (from 1);
        delete-all-cards empties the list.
        """
        for card in (100, 200):
            self.ask(encode.put_card_request(A, card, DAY, END, 1, 0, 0, 1, 7531), decode.put_card_response)
        got = self.ask(encode.get_card_by_index_request(A, 2), decode.get_card_by_index_response)
        self.assertEqual((got.card_number, got.start_date, got.end_date, got.door_4, got.pin), (200, DAY, END, 1, 7531))
        self.assertEqual(self.ask(encode.get_card_by_index_request(A, 3), decode.get_card_by_index_response)
                         .card_number, 0)
        self.assertTrue(self.ask(encode.delete_cards_request(A), decode.delete_all_cards_response).deleted)
        self.assertEqual(self.ask(encode.get_cards_request(A), decode.get_cards_response).cards, 0)

    def test_timeProfiles(self):
        """
        set-time-profile keeps a profile that get-time-profile reports
        field by field; delete-all-time-profiles forgets them all.
        """
        ok = self.ask(encode.set_time_profile_request(
            A, 29, DAY, END, True, False, True, False, True, False, False, datetime.time(8, 30),
            datetime.time(17, 0), None, None, None, None, 3), decode.set_time_profile_response)
        self.assertTrue(ok.stored)
        got = self.ask(encode.get_time_profile_request(A, 29), decode.get_time_profile_response)
        self.assertEqual((got.profile_id, got.start_date, got.end_date, got.monday, got.tuesday, got.segment_1_start,
                          got.segment_1_end, got.linked_profile_id),
                         (29, DAY, END, True, False, datetime.time(8, 30), datetime.time(17, 0), 3))
        self.ask(encode.delete_all_time_profiles_request(A), decode.delete_all_time_profiles_response)
        got = self.ask(encode.get_time_profile_request(A, 29), decode.get_time_profile_response)
        self.assertEqual(got.profile_id, 0)

    def test_tasks(self):
        """
        add-task queues a task, refresh-tasklist puts it in force,
        clear-tasklist removes them all; a task for door 5 is refused.
        """
        task = (A, DAY, END, True, True, True, True, True, False, False, datetime.time(9, 0), 1, 2, 0)
        self.assertTrue(self.ask(encode.add_task_request(*task), decode.add_task_response).added)
        bad = task[:11] + (5,) + task[12:]
        self.assertFalse(self.ask(encode.add_task_request(*bad), decode.add_task_response).added)
        self.assertTrue(self.ask(encode.refresh_tasklist_request(A), decode.refresh_tasklist_response).refreshed)
        self.assertEqual(len(self.controller.tasklist), 1)
        self.assertTrue(self.ask(encode.clear_tasklist_request(A), decode.clear_tasklist_response).cleared)
        self.assertEqual(self.controller.tasklist, [])

    def test_doorsAndAccess(self):
        """
        set-interlock, set-antipassback, activate-keypads, set-pc-control
        and record-special-events are kept; get-antipassback reports its
        setting; an interlock mode that does not exist is refused.
        """
        self.assertTrue(self.ask(encode.set_interlock_request(A, 3), decode.set_interlock_response).ok)
        self.assertFalse(self.ask(encode.set_interlock_request(A, 5), decode.set_interlock_response).ok)
        self.assertTrue(self.ask(encode.set_antipassback_request(A, 2), decode.set_antipassback_response).ok)
        self.assertEqual(self.ask(encode.get_antipassback_request(A), decode.get_antipassback_response).antipassback, 2)
        self.ask(encode.activate_keypads_request(A, True, False, True, False), decode.activate_keypads_response)
        self.ask(encode.set_pc_control_request(A, True), decode.set_pc_control_response)
        self.ask(encode.record_special_events_request(A, True), decode.record_special_events_response)
        c = self.controller
        self.assertEqual((c.interlock, c.keypads, c.pc_control, c.special_events),
                         (3, (True, False, True, False), True, True))

    def test_restoreDefaults(self):
        """
        restore-default-parameters puts the settings back and keeps the cards.
        """
        self.ask(encode.put_card_request(A, 100, DAY, END, 1, 1, 1, 1, 0), decode.put_card_response)
        self.ask(encode.set_door_control_request(A, 1, 2, 30), decode.set_door_control_response)
        self.ask(encode.set_antipassback_request(A, 4), decode.set_antipassback_response)
        self.assertTrue(self.ask(encode.restore_default_parameters_request(A),
                                 decode.restore_default_parameters_response).reset)
        got = self.ask(encode.get_door_control_request(A, 1), decode.get_door_control_response)
        self.assertEqual((got.mode, got.delay), (3, 5))
        self.assertEqual(self.ask(encode.get_antipassback_request(A), decode.get_antipassback_response).antipassback, 0)
        self.assertEqual(list(self.controller.cards), [100])

    def test_events(self):
        """
        get-event reads a stored event by index (0xFFFFFFFF: the latest),
        an unknown index reads as index 0; set-event-index sets the
        download index that get-event-index reports.
        """
        for _ in range(3):
            self.controller.event(NOW)
        got = self.ask(encode.get_event_request(A, 2), decode.get_event_response)
        self.assertEqual((got.index, got.card, got.door, got.timestamp), (2, 10058400, 2, NOW))
        self.assertEqual(self.ask(encode.get_event_request(A, 0xFFFFFFFF), decode.get_event_response).index, 3)
        self.assertEqual(self.ask(encode.get_event_request(A, 9), decode.get_event_response).index, 0)
        self.assertTrue(self.ask(encode.set_event_index_request(A, 2), decode.set_event_index_response).updated)
        self.assertEqual(self.ask(encode.get_event_index_request(A), decode.get_event_index_response).event_index, 2)

    def test_eventsAreBounded(self):
        """
        Only the last MAX_EVENTS events are kept.
        """
        for _ in range(MAX_EVENTS + 5):
            self.controller.event(NOW)
        self.assertEqual(len(self.controller.events), MAX_EVENTS)
        self.assertEqual(min(self.controller.events), 6)
