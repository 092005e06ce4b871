/*
 * console.js: the controller console of uhppoted-tunnel. Builds the form
 * of the chosen command from UHPPOTE.COMMANDS (uhppote.js), encodes the
 * request in the browser, posts it to this tunnel's /udp/send or
 * /udp/broadcast, and shows the reply decoded field by field. No markup
 * is made from data: every value is set as text.
 */
(function () {
  'use strict';

  var codec = window.UHPPOTE;
  var BROADCAST_WAIT = '2s';
  var values = {};            // what the user typed, by parameter name, kept across commands
  var known = {};             // serial -> address, from get-all-controllers
  var nextID = 1;
  var pending = null;         // the command waiting for confirmation

  function $(id) { return document.getElementById(id); }

  function element(tag, attributes, text) {
    var e = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { e.setAttribute(name, attributes[name]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function current() { return codec.command($('command').value); }

  // ---- the form

  function fillCommands() {
    var select = $('command');
    codec.COMMANDS.forEach(function (command) {
      select.appendChild(element('option', {value: command.name}, command.name));
    });
    var wanted = decodeURIComponent(window.location.hash.slice(1));
    if (codec.command(wanted)) { select.value = wanted; }
  }

  function parameterField(parameter) {
    var id = 'p-' + parameter.name;
    var value = values[parameter.name] !== undefined ? values[parameter.name] : parameter.value;
    var wrap = element('div', {'class': 'field'});
    if (parameter.kind === 'bool') {
      var label = element('label', {'class': 'check', 'for': id});
      var box = element('input', {type: 'checkbox', id: id, name: parameter.name});
      box.checked = value === true;
      label.appendChild(box);
      label.appendChild(document.createTextNode(parameter.label));
      wrap.appendChild(label);
      return wrap;
    }
    wrap.appendChild(element('label', {'for': id}, parameter.label));
    var input;
    if (parameter.kind === 'choice') {
      input = element('select', {id: id, name: parameter.name});
      Object.keys(parameter.options).forEach(function (key) {
        input.appendChild(element('option', {value: key}, key + ': ' + parameter.options[key]));
      });
      input.value = value;
    } else {
      input = element('input', {type: 'text', id: id, name: parameter.name, autocomplete: 'off',
                                spellcheck: 'false'});
      if (/^uint/.test(parameter.kind)) { input.setAttribute('inputmode', 'numeric'); }
      if (parameter.name === 'controller') { input.setAttribute('list', 'known-controllers'); }
      if (parameter.kind === 'datetime') {
        input.setAttribute('placeholder', 'YYYY-MM-DD HH:MM:SS');
        if (value === 'now' || value === undefined) { value = codec.localNow(); }
      } else if (parameter.kind === 'date') {
        input.setAttribute('placeholder', 'YYYY-MM-DD');
      } else if (parameter.kind === 'hhmm') {
        input.setAttribute('placeholder', 'HH:MM');
      }
      input.value = value === undefined ? '' : value;
    }
    wrap.appendChild(input);
    return wrap;
  }

  function showParameters() {
    var command = current();
    var fields = $('parameter-fields');
    fields.textContent = '';
    command.parameters.forEach(function (parameter) { fields.appendChild(parameterField(parameter)); });
    $('no-parameters').hidden = command.parameters.length > 0;
    $('command-description').textContent = command.description;
    hideError();
    hideConfirm();
  }

  function remember(event) {
    var input = event.target;
    if (!input.name || input.id === 'command' || input.id === 'show-raw') { return; }
    values[input.name] = input.type === 'checkbox' ? input.checked : input.value;
  }

  function readValues(command) {
    var read = {};
    command.parameters.forEach(function (parameter) {
      var input = $('p-' + parameter.name);
      read[parameter.name] = input.type === 'checkbox' ? input.checked : input.value;
    });
    return read;
  }

  function showError(message) {
    var box = $('form-error');
    box.textContent = message;
    box.hidden = false;
    var command = current();
    command.parameters.forEach(function (parameter) {
      var input = $('p-' + parameter.name);
      var bad = message.indexOf(parameter.label + ':') === 0;
      if (bad) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', 'form-error');
        input.focus();
      } else {
        input.removeAttribute('aria-invalid');
        input.removeAttribute('aria-describedby');
      }
    });
  }

  function hideError() {
    $('form-error').hidden = true;
    Array.prototype.forEach.call(document.querySelectorAll('[aria-invalid]'), function (input) {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    });
  }

  // ---- confirmation of destructive commands

  function askConfirm(command, read, packet) {
    pending = {command: command, read: read, packet: packet};
    var who = command.broadcast ? 'every controller' : 'controller ' + read.controller;
    $('confirm-title').textContent = 'Send ' + command.name + ' to ' + who + '?';
    $('confirm-text').textContent = command.description + ' This cannot be undone from here.';
    $('confirm').hidden = false;
    $('confirm-yes').focus();
  }

  function hideConfirm() {
    pending = null;
    $('confirm').hidden = true;
  }

  // ---- the result

  function status(state, text) {
    var line = $('result-status');
    line.setAttribute('data-state', state);
    line.textContent = text;
  }

  function fieldList(fields) {
    var list = element('dl', {'class': 'fields'});
    fields.forEach(function (field) {
      list.appendChild(element('dt', {}, field[0]));
      list.appendChild(element('dd', {'data-field': field[0]}, field[1]));
    });
    return list;
  }

  function showRaw(request, replies) {
    $('raw-request').textContent = codec.hexdump(request);
    $('raw-reply').textContent = replies.length ? replies.map(function (reply) {
      return codec.hexdump(reply);
    }).join('\n\n') : '(no reply)';
  }

  function showDiscovered(found) {
    var list = $('discovered-list');
    var datalist = $('known-controllers');
    list.textContent = '';
    datalist.textContent = '';
    found.forEach(function (controller) {
      known[controller.serial] = controller.address;
    });
    Object.keys(known).forEach(function (serial) {
      var item = element('li');
      var button = element('button', {type: 'button', 'class': 'button', 'data-serial': serial},
                           'Use ' + serial + ' (' + known[serial] + ')');
      item.appendChild(button);
      list.appendChild(item);
      datalist.appendChild(element('option', {value: serial}, known[serial]));
    });
    $('discovered').hidden = found.length === 0;
  }

  function pick(event) {
    var serial = event.target.getAttribute('data-serial');
    if (!serial) { return; }
    values.controller = serial;
    var input = $('p-controller');
    if (!input) {
      $('command').value = 'get-controller';
      showParameters();
      input = $('p-controller');
    }
    input.value = serial;
    input.focus();
    status('ok', 'Controller ' + serial + ' is in the controller field.');
  }

  function decoded(command, packet) {
    try {
      return codec.decode(command.name, packet);
    } catch (e) {
      return {error: e.message};
    }
  }

  function showReply(command, read, document_) {
    var reply = $('reply');
    if (command.broadcast) {
      var replies = document_.replies || [];
      var found = [];
      replies.forEach(function (packet) {
        var result = decoded(command, packet);
        if (result.error) {
          reply.appendChild(element('p', {'class': 'banner', 'data-state': 'error'}, result.error));
          return;
        }
        var fields = result.fields;
        found.push({serial: String(result.controller), address: fields[1][1]});
        reply.appendChild(element('h3', {}, 'Controller ' + result.controller));
        reply.appendChild(fieldList(fields));
      });
      showDiscovered(found);
      status(found.length ? 'ok' : 'timeout', found.length ?
             found.length + (found.length === 1 ? ' controller' : ' controllers') + ' answered within ' +
             BROADCAST_WAIT + '.' :
             'No controller answered within ' + BROADCAST_WAIT +
             ': check that the tunnel reaches the controllers\' network.');
      return replies;
    }
    if (command.noReply) {
      status('ok', 'Sent ' + command.name + ' to controller ' + read.controller + '. Controllers do not answer ' +
             command.name + ': use get-controller to see the new settings.');
      return [];
    }
    var result = decoded(command, document_.reply);
    if (result.error) {
      status('error', 'The reply could not be read: ' + result.error);
    } else if (result.missing) {
      status('missing', result.missing);
      reply.appendChild(fieldList(result.fields));
    } else {
      status('ok', 'Controller ' + result.controller + ' answered ' + command.name + '.');
      reply.appendChild(fieldList(result.fields));
    }
    return [document_.reply];
  }

  function busy(on) {
    $('execute').disabled = on;
    $('busy').hidden = !on;
    $('result').setAttribute('aria-busy', on ? 'true' : 'false');
  }

  function send(command, read, packet) {
    var body = {ID: nextID++, request: Array.prototype.slice.call(packet)};
    body.wait = command.broadcast ? BROADCAST_WAIT : !command.noReply;
    $('reply').textContent = '';
    showRaw(packet, []);
    status('waiting', command.broadcast ? 'Broadcasting ' + command.name + ', collecting replies for ' +
           BROADCAST_WAIT + '…' : 'Sent ' + command.name + ' to controller ' + read.controller +
           ', waiting for the reply…');
    busy(true);
    var answered;
    fetch(command.broadcast ? '../udp/broadcast' : '../udp/send', {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body),
      cache: 'no-store', credentials: 'same-origin'
    }).then(function (response) {
      answered = response;
      return response.json().catch(function () { return {}; });
    }).then(function (document_) {
      if (answered.status === 504) {
        status('timeout', 'Timed out: controller ' + read.controller + ' did not answer ' + command.name + ' (' +
               (document_.error || 'no reply') + '). Check the serial number, and that the controller is on ' +
               'the network the tunnel reaches.');
        return;
      }
      if (!answered.ok) {
        status('error', 'The tunnel refused the request (HTTP ' + answered.status + '): ' +
               (document_.error || answered.statusText || 'no reason given') + '.');
        return;
      }
      showRaw(packet, showReply(command, read, document_));
    }).catch(function () {
      status('error', 'The tunnel could not be reached: check that it is running, then try again.');
    }).then(function () {
      busy(false);
    });
  }

  function execute(event) {
    event.preventDefault();
    hideError();
    hideConfirm();
    var command = current();
    var read = readValues(command);
    var packet;
    try {
      packet = codec.encode(command.name, read);
    } catch (e) {
      showError(e.message);
      return;
    }
    if (command.confirm) {
      askConfirm(command, read, packet);
      return;
    }
    send(command, read, packet);
  }

  function confirmed() {
    var job = pending;
    hideConfirm();
    if (job) {
      $('execute').focus();
      send(job.command, job.read, job.packet);
    }
  }

  function cancelled() {
    hideConfirm();
    status('idle', 'Not sent.');
    $('execute').focus();
  }

  function start() {
    fillCommands();
    showParameters();
    $('command').addEventListener('change', function () {
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, '', '#' + $('command').value);
      }
      showParameters();
    });
    window.addEventListener('hashchange', function () {
      var wanted = decodeURIComponent(window.location.hash.slice(1));
      if (codec.command(wanted) && wanted !== $('command').value) {
        $('command').value = wanted;
        showParameters();
      }
    });
    $('form').addEventListener('input', remember);
    $('form').addEventListener('change', remember);
    $('form').addEventListener('submit', execute);
    $('confirm-yes').addEventListener('click', confirmed);
    $('confirm-no').addEventListener('click', cancelled);
    $('confirm').addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { cancelled(); }
    });
    $('discovered-list').addEventListener('click', pick);
    $('show-raw').addEventListener('change', function () { $('raw').hidden = !$('show-raw').checked; });
    document.body.setAttribute('data-loaded', 'true');
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
