/*
 * uhppote.js: the UHPPOTE access controller protocol for the console of
 * uhppoted-tunnel, in the browser and under node (for the tests).
 *
 * A request and its reply are 64-byte packets: byte 0 is 0x17, byte 1 the
 * function code, bytes 4..7 the controller's serial number; integers are
 * little-endian, dates and times BCD (YYYYMMDD, HHmmss, HHmm). Each command
 * below, named as uhppote-cli names it, lists its parameters, where they go
 * in the request, and the fields of its reply.
 */
(function (root) {
  'use strict';

  var SOM = 0x17;
  var MAGIC = 0x55AAAA55;

  var DOOR_MODES = {1: 'normally open', 2: 'normally closed', 3: 'controlled'};
  var INTERLOCKS = {0: 'none', 1: 'doors 1 and 2', 2: 'doors 3 and 4', 3: 'doors 1 and 2, doors 3 and 4',
                    4: 'doors 1, 2 and 3', 8: 'doors 1, 2, 3 and 4'};
  var ANTIPASSBACK = {0: 'disabled', 1: '(1:2);(3:4)', 2: '(1,3):(2,4)', 3: '1:(2,3)', 4: '1:(2,3,4)'};
  var TASKS = {0: 'door controlled', 1: 'door normally open', 2: 'door normally closed', 3: 'disable time profile',
               4: 'enable time profile', 5: 'card, no password', 6: 'card and IN password',
               7: 'card and password', 8: "enable 'more cards'", 9: "disable 'more cards'", 10: 'trigger once',
               11: 'disable pushbutton', 12: 'enable pushbutton'};
  var EVENT_TYPES = {0: 'none', 1: 'card swipe', 2: 'door', 3: 'alarm', 255: 'overwritten'};
  var DIRECTIONS = {1: 'in', 2: 'out'};
  var WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

  // parameters: {name, label, kind, min, max, options, value (the default)}

  function controller() { return {name: 'controller', label: 'Controller', kind: 'uint32', min: 1}; }
  function door() { return {name: 'door', label: 'Door', kind: 'uint8', min: 1, max: 4, value: '1'}; }
  function number(name, label, min, max, value) {
    return {name: name, label: label, kind: 'uint32', min: min, max: max, value: value};
  }
  function choice(name, label, options, value) {
    return {name: name, label: label, kind: 'choice', options: options, value: value};
  }
  function flag(name, label, value) { return {name: name, label: label, kind: 'bool', value: value}; }
  function date(name, label, value) { return {name: name, label: label, kind: 'date', value: value}; }
  function hhmm(name, label, value) { return {name: name, label: label, kind: 'hhmm', value: value}; }
  function ip(name, label, value) { return {name: name, label: label, kind: 'ipv4', value: value}; }

  // request fields: [offset, type, parameter name or constant]
  // reply fields: [label, type, offset, names (for enumerations)]

  var OK = [['Succeeded', 'bool', 8]];

  var CONTROLLER_REPLY = [['Controller', 'uint32', 4], ['IP address', 'ipv4', 8], ['Subnet mask', 'ipv4', 12],
                          ['Gateway', 'ipv4', 16], ['MAC address', 'mac', 20], ['Firmware version', 'version', 26],
                          ['Firmware date', 'date', 28]];

  var CARD_REPLY = [['Card number', 'uint32', 8], ['Valid from', 'date', 12], ['Valid until', 'date', 16],
                    ['Door 1', 'permission', 20], ['Door 2', 'permission', 21], ['Door 3', 'permission', 22],
                    ['Door 4', 'permission', 23], ['PIN', 'uint24', 24]];

  var EVENT_REPLY = [['Event index', 'uint32', 8], ['Event type', 'uint8', 12, EVENT_TYPES],
                     ['Access granted', 'bool', 13], ['Door', 'uint8', 14], ['Direction', 'uint8', 15, DIRECTIONS],
                     ['Card number', 'uint32', 16], ['Timestamp', 'datetime', 20], ['Reason', 'uint8', 27]];

  var PROFILE_FIELDS = [[9, 'date', 'from'], [13, 'date', 'until']].concat(
    WEEKDAYS.map(function (day, i) { return [17 + i, 'bool', day]; }),
    [[24, 'hhmm', 'segment1start'], [26, 'hhmm', 'segment1end'], [28, 'hhmm', 'segment2start'],
     [30, 'hhmm', 'segment2end'], [32, 'hhmm', 'segment3start'], [34, 'hhmm', 'segment3end'],
     [36, 'uint8', 'linked']]);

  var PROFILE_PARAMETERS = [date('from', 'Valid from', '2025-01-01'), date('until', 'Valid until', '2025-12-31')]
    .concat(WEEKDAYS.map(function (day, i) { return flag(day, day.charAt(0).toUpperCase() + day.slice(1), i < 5); }),
      [hhmm('segment1start', 'Segment 1 start', '08:30'), hhmm('segment1end', 'Segment 1 end', '17:30'),
       hhmm('segment2start', 'Segment 2 start', '00:00'), hhmm('segment2end', 'Segment 2 end', '00:00'),
       hhmm('segment3start', 'Segment 3 start', '00:00'), hhmm('segment3end', 'Segment 3 end', '00:00'),
       number('linked', 'Linked profile (0: none)', 0, 254, '0')]);

  var COMMANDS = [
    {name: 'get-all-controllers', code: 0x94, broadcast: true,
     description: 'Find every controller that answers a broadcast.',
     parameters: [], request: [], reply: CONTROLLER_REPLY},
    {name: 'get-controller', code: 0x94, description: "A controller's network settings and firmware.",
     parameters: [controller()], request: [], reply: CONTROLLER_REPLY},
    {name: 'set-IP', code: 0x96, noReply: true, confirm: true,
     description: "Change a controller's IP address, subnet mask and gateway (controllers do not answer).",
     parameters: [controller(), ip('address', 'IP address', '192.168.1.100'),
                  ip('netmask', 'Subnet mask', '255.255.255.0'), ip('gateway', 'Gateway', '192.168.1.1')],
     request: [[8, 'ipv4', 'address'], [12, 'ipv4', 'netmask'], [16, 'ipv4', 'gateway'], [20, 'uint32', MAGIC]]},
    {name: 'get-listener', code: 0x92, description: 'Where the controller sends its events.',
     parameters: [controller()], request: [],
     reply: [['Address', 'ipv4', 8], ['Port', 'uint16', 12], ['Auto-send interval (s)', 'uint8', 14]]},
    {name: 'set-listener', code: 0x90, description: 'Set where the controller sends its events.',
     parameters: [controller(), ip('address', 'Listener address', '192.168.1.100'),
                  number('port', 'Listener port', 0, 65535, '60001'),
                  number('interval', 'Auto-send interval (s, 0: off)', 0, 255, '0')],
     request: [[8, 'ipv4', 'address'], [12, 'uint16', 'port'], [14, 'uint8', 'interval']], reply: OK},
    {name: 'get-time', code: 0x32, description: "The controller's date and time.",
     parameters: [controller()], request: [], reply: [['Date and time', 'datetime', 8]]},
    {name: 'set-time', code: 0x30, description: "Set the controller's date and time.",
     parameters: [controller(), {name: 'datetime', label: 'Date and time', kind: 'datetime', value: 'now'}],
     request: [[8, 'datetime', 'datetime']], reply: [['Date and time', 'datetime', 8]]},
    {name: 'get-door-control', code: 0x82, description: "A door's control mode and unlock delay.",
     parameters: [controller(), door()], request: [[8, 'uint8', 'door']],
     reply: [['Door', 'uint8', 8], ['Mode', 'uint8', 9, DOOR_MODES], ['Delay (s)', 'uint8', 10]]},
    {name: 'set-door-control', code: 0x80, description: "Set a door's control mode and unlock delay.",
     parameters: [controller(), door(), choice('mode', 'Mode', DOOR_MODES, '3'),
                  number('delay', 'Delay (s)', 0, 255, '5')],
     request: [[8, 'uint8', 'door'], [9, 'uint8', 'mode'], [10, 'uint8', 'delay']],
     reply: [['Door', 'uint8', 8], ['Mode', 'uint8', 9, DOOR_MODES], ['Delay (s)', 'uint8', 10]]},
    {name: 'set-door-passcodes', code: 0x8C, description: 'Set up to four keypad passcodes for a door.',
     parameters: [controller(), door(), number('passcode1', 'Passcode 1 (0: none)', 0, 999999, '0'),
                  number('passcode2', 'Passcode 2', 0, 999999, '0'), number('passcode3', 'Passcode 3', 0, 999999, '0'),
                  number('passcode4', 'Passcode 4', 0, 999999, '0')],
     request: [[8, 'uint8', 'door'], [12, 'uint32', 'passcode1'], [16, 'uint32', 'passcode2'],
               [20, 'uint32', 'passcode3'], [24, 'uint32', 'passcode4']], reply: OK},
    {name: 'open-door', code: 0x40, description: 'Unlock a door.',
     parameters: [controller(), door()], request: [[8, 'uint8', 'door']], reply: [['Opened', 'bool', 8]]},
    {name: 'get-status', code: 0x20, description: "The controller's state and its last event.",
     parameters: [controller()], request: [],
     reply: [['System date and time', 'sysdatetime', 37]].concat(
       [1, 2, 3, 4].map(function (d) { return ['Door ' + d + ' open', 'bool', 27 + d]; }),
       [1, 2, 3, 4].map(function (d) { return ['Door ' + d + ' button pressed', 'bool', 31 + d]; }),
       [['System error', 'uint8', 36], ['Special info', 'uint8', 48], ['Relays', 'hex8', 49],
        ['Inputs', 'hex8', 50], ['Sequence number', 'uint32', 40]], EVENT_REPLY)},
    {name: 'get-cards', code: 0x58, description: 'How many cards the controller holds.',
     parameters: [controller()], request: [], reply: [['Cards', 'uint32', 8]]},
    {name: 'get-card', code: 0x5A, description: 'A card and its permissions.',
     parameters: [controller(), number('card', 'Card number', 1, 4294967294)],
     request: [[8, 'uint32', 'card']], reply: CARD_REPLY, missing: [8, 'card not found']},
    {name: 'get-card-by-index', code: 0x5C, description: "The card at a place in the controller's list (from 1).",
     parameters: [controller(), number('index', 'Index', 1, 4294967295, '1')],
     request: [[8, 'uint32', 'index']], reply: CARD_REPLY, missing: [8, 'no card at that index']},
    {name: 'put-card', code: 0x50, description: 'Add or change a card.',
     parameters: [controller(), number('card', 'Card number', 1, 4294967294),
                  date('from', 'Valid from', '2025-01-01'), date('until', 'Valid until', '2025-12-31'),
                  number('door1', 'Door 1 (0: no, 1: yes, 2-254: profile)', 0, 254, '1'),
                  number('door2', 'Door 2', 0, 254, '0'), number('door3', 'Door 3', 0, 254, '0'),
                  number('door4', 'Door 4', 0, 254, '0'), number('pin', 'PIN (0: none)', 0, 999999, '0')],
     request: [[8, 'uint32', 'card'], [12, 'date', 'from'], [16, 'date', 'until'], [20, 'uint8', 'door1'],
               [21, 'uint8', 'door2'], [22, 'uint8', 'door3'], [23, 'uint8', 'door4'], [24, 'uint24', 'pin']],
     reply: [['Stored', 'bool', 8]]},
    {name: 'delete-card', code: 0x52, description: 'Remove a card.',
     parameters: [controller(), number('card', 'Card number', 1, 4294967294)],
     request: [[8, 'uint32', 'card']], reply: [['Deleted', 'bool', 8]]},
    {name: 'delete-all-cards', code: 0x54, confirm: true, description: 'Remove every card.',
     parameters: [controller()], request: [[8, 'uint32', MAGIC]], reply: [['Deleted', 'bool', 8]]},
    {name: 'get-event', code: 0xB0, description: 'An event by its index (4294967295: the latest).',
     parameters: [controller(), number('index', 'Event index', 0, 4294967295, '1')],
     request: [[8, 'uint32', 'index']], reply: EVENT_REPLY, missing: [8, 'no event at that index']},
    {name: 'get-event-index', code: 0xB4, description: 'The index of the last event downloaded.',
     parameters: [controller()], request: [], reply: [['Event index', 'uint32', 8]]},
    {name: 'set-event-index', code: 0xB2, description: 'Set the index of the last event downloaded.',
     parameters: [controller(), number('index', 'Event index', 0, 4294967295, '0')],
     request: [[8, 'uint32', 'index'], [12, 'uint32', MAGIC]], reply: [['Updated', 'bool', 8]]},
    {name: 'record-special-events', code: 0x8E, description: 'Record door and pushbutton events, or not.',
     parameters: [controller(), flag('enable', 'Record special events', true)],
     request: [[8, 'bool', 'enable']], reply: [['Updated', 'bool', 8]]},
    {name: 'get-time-profile', code: 0x98, description: 'A time profile.',
     parameters: [controller(), number('profile', 'Profile (2-254)', 2, 254, '2')],
     request: [[8, 'uint8', 'profile']], missing: [8, 'no such time profile', 1],
     reply: [['Profile', 'uint8', 8], ['Valid from', 'date', 9], ['Valid until', 'date', 13]].concat(
       WEEKDAYS.map(function (day, i) { return [day.charAt(0).toUpperCase() + day.slice(1), 'bool', 17 + i]; }),
       [['Segment 1', 'segment', 24], ['Segment 2', 'segment', 28], ['Segment 3', 'segment', 32],
        ['Linked profile', 'uint8', 36]])},
    {name: 'set-time-profile', code: 0x88, description: 'Add or change a time profile.',
     parameters: [controller(), number('profile', 'Profile (2-254)', 2, 254, '2')].concat(PROFILE_PARAMETERS),
     request: [[8, 'uint8', 'profile']].concat(PROFILE_FIELDS), reply: [['Stored', 'bool', 8]]},
    {name: 'delete-all-time-profiles', code: 0x8A, description: 'Remove every time profile.',
     parameters: [controller()], request: [[8, 'uint32', MAGIC]], reply: [['Deleted', 'bool', 8]]},
    {name: 'add-task', code: 0xA8, description: 'Add a scheduled task (in force after refresh-tasklist).',
     parameters: [controller(), date('from', 'Valid from', '2025-01-01'), date('until', 'Valid until', '2025-12-31')]
       .concat(WEEKDAYS.map(function (day, i) {
         return flag(day, day.charAt(0).toUpperCase() + day.slice(1), i < 5);
       }), [hhmm('at', 'Start time', '08:00'), door(), choice('task', 'Task', TASKS, '0'),
            number('cards', "'More cards' count", 0, 255, '0')]),
     request: [[8, 'date', 'from'], [12, 'date', 'until']].concat(
       WEEKDAYS.map(function (day, i) { return [16 + i, 'bool', day]; }),
       [[23, 'hhmm', 'at'], [25, 'uint8', 'door'], [26, 'uint8', 'task'], [27, 'uint8', 'cards']]),
     reply: [['Added', 'bool', 8]]},
    {name: 'refresh-tasklist', code: 0xAC, description: 'Put the added tasks in force.',
     parameters: [controller()], request: [[8, 'uint32', MAGIC]], reply: [['Refreshed', 'bool', 8]]},
    {name: 'clear-tasklist', code: 0xA6, description: 'Remove every task.',
     parameters: [controller()], request: [[8, 'uint32', MAGIC]], reply: [['Cleared', 'bool', 8]]},
    {name: 'set-pc-control', code: 0xA0, description: 'Let a host computer control access, or not.',
     parameters: [controller(), flag('enable', 'PC control', true)],
     request: [[8, 'uint32', MAGIC], [12, 'bool', 'enable']], reply: OK},
    {name: 'set-interlock', code: 0xA2, description: "Set the doors' interlock.",
     parameters: [controller(), choice('interlock', 'Interlock', INTERLOCKS, '0')],
     request: [[8, 'uint8', 'interlock']], reply: OK},
    {name: 'get-antipassback', code: 0x86, description: 'The anti-passback mode.',
     parameters: [controller()], request: [], reply: [['Anti-passback', 'uint8', 8, ANTIPASSBACK]]},
    {name: 'set-antipassback', code: 0x84, description: 'Set the anti-passback mode.',
     parameters: [controller(), choice('antipassback', 'Anti-passback', ANTIPASSBACK, '0')],
     request: [[8, 'uint8', 'antipassback']], reply: OK},
    {name: 'activate-keypads', code: 0xA4, description: "Turn the readers' keypads on or off.",
     parameters: [controller()].concat([1, 2, 3, 4].map(function (r) {
       return flag('reader' + r, 'Reader ' + r + ' keypad', false);
     })),
     request: [[8, 'bool', 'reader1'], [9, 'bool', 'reader2'], [10, 'bool', 'reader3'], [11, 'bool', 'reader4']],
     reply: OK},
    {name: 'restore-default-parameters', code: 0xC8, confirm: true,
     description: "Reset the controller's settings to the factory's.",
     parameters: [controller()], request: [[8, 'uint32', MAGIC]], reply: [['Reset', 'bool', 8]]}
  ];

  var BY_NAME = {};
  COMMANDS.forEach(function (command) { BY_NAME[command.name] = command; });

  // ---- encoding: values come as the text of the form's fields (or booleans)

  function fail(label, expected) {
    throw new Error(label + ': ' + expected + '.');
  }

  function whole(text, label, min, max) {
    var value = String(text).trim();
    if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
      fail(label, 'enter a whole number from ' + min + ' to ' + max);
    }
    return Number(value);
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) { s = '0' + s; }
    return s;
  }

  function validDate(y, m, d) {
    var t = new Date(Date.UTC(y, m - 1, d));
    return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
  }

  function bcd(digits, packet, offset) {
    for (var i = 0; i < digits.length; i += 2) {
      packet[offset + i / 2] = (Number(digits[i]) << 4) | Number(digits[i + 1]);
    }
  }

  function localNow() {
    var t = new Date();
    return t.getFullYear() + '-' + pad(t.getMonth() + 1, 2) + '-' + pad(t.getDate(), 2) + ' ' +
      pad(t.getHours(), 2) + ':' + pad(t.getMinutes(), 2) + ':' + pad(t.getSeconds(), 2);
  }

  var PACKERS = {
    uint8: function (v, p, o, label) { p[o] = whole(v, label, 0, 255); },
    uint16: function (v, p, o, label) {
      var n = whole(v, label, 0, 65535);
      p[o] = n & 0xff; p[o + 1] = (n >>> 8) & 0xff;
    },
    uint24: function (v, p, o, label) {
      var n = whole(v, label, 0, 0xffffff);
      p[o] = n & 0xff; p[o + 1] = (n >>> 8) & 0xff; p[o + 2] = (n >>> 16) & 0xff;
    },
    uint32: function (v, p, o, label) {
      var n = typeof v === 'number' ? v : whole(v, label, 0, 4294967295);
      p[o] = n & 0xff; p[o + 1] = (n >>> 8) & 0xff; p[o + 2] = (n >>> 16) & 0xff; p[o + 3] = (n >>> 24) & 0xff;
    },
    bool: function (v, p, o) { p[o] = (v === true || v === 'true' || v === 'on') ? 1 : 0; },
    ipv4: function (v, p, o, label) {
      var parts = String(v).trim().split('.');
      if (parts.length !== 4 || !parts.every(function (x) { return /^[0-9]{1,3}$/.test(x) && Number(x) <= 255; })) {
        fail(label, 'enter an IPv4 address such as 192.168.1.100');
      }
      parts.forEach(function (x, i) { p[o + i] = Number(x); });
    },
    date: function (v, p, o, label) {
      var m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/.exec(String(v).trim());
      if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3]))) {
        fail(label, 'enter a date as YYYY-MM-DD');
      }
      bcd(m[1] + m[2] + m[3], p, o);
    },
    datetime: function (v, p, o, label) {
      var text = String(v).trim();
      if (text === 'now' || text === '') { text = localNow(); }
      var m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})$/.exec(text);
      if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3])) || Number(m[4]) > 23 ||
          Number(m[5]) > 59 || Number(m[6]) > 59) {
        fail(label, 'enter a date and time as YYYY-MM-DD HH:MM:SS, or now');
      }
      bcd(m[1] + m[2] + m[3] + m[4] + m[5] + m[6], p, o);
    },
    hhmm: function (v, p, o, label) {
      var m = /^([0-9]{2}):([0-9]{2})$/.exec(String(v).trim());
      if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) { fail(label, 'enter a time as HH:MM'); }
      bcd(m[1] + m[2], p, o);
    }
  };

  /*
   * The request packet of a command, from its parameters' values (an
   * object by parameter name: text, or booleans for flags). Throws an
   * Error naming the field when a value is not valid.
   */
  function encode(name, values) {
    var command = BY_NAME[name];
    if (!command) { throw new Error('There is no command called ' + name + '.'); }
    var packet = new Uint8Array(64);
    packet[0] = SOM;
    packet[1] = command.code;
    var labels = {};
    command.parameters.forEach(function (p) { labels[p.name] = p; });
    if (!command.broadcast) {
      var serial = whole(values.controller === undefined ? '' : values.controller, 'Controller', 1, 4294967295);
      PACKERS.uint32(serial, packet, 4);
    }
    command.request.forEach(function (field) {
      var offset = field[0], type = field[1], source = field[2];
      if (typeof source === 'number') {
        PACKERS[type](source, packet, offset, 'constant');
        return;
      }
      var parameter = labels[source];
      var value = values[source] === undefined ? parameter.value : values[source];
      if (parameter.min !== undefined && type !== 'bool') {
        whole(value, parameter.label, parameter.min, parameter.max === undefined ? 4294967295 : parameter.max);
      }
      PACKERS[type](value === undefined ? '' : value, packet, offset, parameter.label);
    });
    return packet;
  }

  // ---- decoding

  function u32(p, o) { return (p[o] | (p[o + 1] << 8) | (p[o + 2] << 16)) + p[o + 3] * 16777216; }
  function hex(b) { return pad(b.toString(16), 2); }
  function bcdText(p, o, n) {
    var s = '';
    for (var i = 0; i < n; i++) { s += hex(p[o + i]); }
    return /^[0-9]+$/.test(s) ? s : null;
  }

  function dateText(s) {
    if (s === null || !validDate(Number(s.slice(0, 4)), Number(s.slice(4, 6)), Number(s.slice(6, 8)))) {
      return null;
    }
    return s.slice(0, 4) + '-' + s.slice(4, 6) + '-' + s.slice(6, 8);
  }

  function timeText(s) {
    if (s === null || Number(s.slice(0, 2)) > 23 || Number(s.slice(2, 4)) > 59 ||
        (s.length > 4 && Number(s.slice(4, 6)) > 59)) {
      return null;
    }
    return s.slice(0, 2) + ':' + s.slice(2, 4) + (s.length > 4 ? ':' + s.slice(4, 6) : '');
  }

  function dateTimeText(datePart, timePart) {
    var d = dateText(datePart), t = timeText(timePart);
    return d === null || t === null ? null : d + ' ' + t;
  }

  var NONE = '(none)';

  var READERS = {
    uint8: function (p, o) { return p[o]; },
    hex8: function (p, o) { return '0x' + hex(p[o]); },
    uint16: function (p, o) { return p[o] | (p[o + 1] << 8); },
    uint24: function (p, o) { return p[o] | (p[o + 1] << 8) | (p[o + 2] << 16); },
    uint32: u32,
    bool: function (p, o) { return p[o] !== 0 ? 'yes' : 'no'; },
    ipv4: function (p, o) { return [p[o], p[o + 1], p[o + 2], p[o + 3]].join('.'); },
    mac: function (p, o) { return Array.prototype.slice.call(p, o, o + 6).map(hex).join(':'); },
    version: function (p, o) { return 'v' + p[o].toString(16) + '.' + hex(p[o + 1]); },
    date: function (p, o) { return dateText(bcdText(p, o, 4)) || NONE; },
    datetime: function (p, o) {
      var s = bcdText(p, o, 7);
      return (s && dateTimeText(s.slice(0, 8), s.slice(8))) || NONE;
    },
    sysdatetime: function (p) {
      var d = bcdText(p, 51, 3), t = bcdText(p, 37, 3);
      return (d && t && dateTimeText('20' + d, t)) || NONE;
    },
    hhmm: function (p, o) { return timeText(bcdText(p, o, 2)) || NONE; },
    segment: function (p, o) {
      return (timeText(bcdText(p, o, 2)) || NONE) + ' to ' + (timeText(bcdText(p, o + 2, 2)) || NONE);
    },
    permission: function (p, o) {
      var v = p[o];
      return v === 0 ? 'no access' : v === 1 ? 'access' : 'time profile ' + v;
    }
  };

  /*
   * A reply, checked and decoded: {controller, fields: [[label, text]],
   * missing: a sentence when the controller has no such record}. Throws
   * an Error saying what is wrong with a packet that is not this
   * command's reply.
   */
  function decode(name, packet) {
    var command = BY_NAME[name];
    var p = packet instanceof Uint8Array ? packet : Uint8Array.from(packet);
    if (p.length !== 64) { throw new Error('The reply is ' + p.length + ' bytes long, not 64.'); }
    if (p[0] !== SOM) { throw new Error('The reply does not start with 0x17 (it starts with 0x' + hex(p[0]) + ').'); }
    if (p[1] !== command.code) {
      throw new Error('The reply is for function 0x' + hex(p[1]) + ', not ' + name + ' (0x' + hex(command.code) + ').');
    }
    var fields = [['Controller', String(u32(p, 4))]];
    (command.reply || []).forEach(function (field) {
      if (field[0] === 'Controller') { return; }
      var value = READERS[field[1]](p, field[2]);
      var names = field[3];
      var text = names && names[value] !== undefined ? value + ' (' + names[value] + ')' : String(value);
      fields.push([field[0], text]);
    });
    var missing = null;
    if (command.missing) {
      var size = command.missing[2] || 4;
      var id = size === 1 ? p[command.missing[0]] : u32(p, command.missing[0]);
      if (id === 0) { missing = 'The controller answered: ' + command.missing[1] + '.'; }
    }
    return {controller: u32(p, 4), fields: fields, missing: missing};
  }

  function hexdump(packet) {
    var lines = [];
    for (var i = 0; i < packet.length; i += 16) {
      lines.push(pad(i.toString(16), 4) + '  ' +
                 Array.prototype.slice.call(packet, i, i + 16).map(hex).join(' '));
    }
    return lines.join('\n');
  }

  var api = {COMMANDS: COMMANDS, command: function (name) { return BY_NAME[name]; },
             encode: encode, decode: decode, hexdump: hexdump, localNow: localNow};
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.UHPPOTE = api;
  }
}(this));
