/*
 * The live status page of uhppoted-tunnel.
 *
 * Reads the tunnel's status snapshot from status/stream (Server-Sent
 * Events, one JSON snapshot a second) and shows it. Every string from the
 * snapshot is set as text (textContent), never parsed as HTML: connector
 * strings, addresses and warnings may come from hostile peers. No inline
 * style either: state is shown through classes and data-state attributes
 * that status.css styles, so the page works under the tunnel's
 * Content-Security-Policy.
 */
(function () {
  'use strict';

  var SVG = 'http://www.w3.org/2000/svg';
  var STATES = ['up', 'down', 'connecting', 'failed'];
  var STREAM = 'status/stream';
  var MAX_EVENTS = 12;
  var MAX_WARNINGS = 20;
  var STALE_MS = 10000;
  var MAX_RETRY_MS = 30000;

  var source = null;
  var retryTimer = null;
  var retryDelay = 1000;
  var lastMessage = 0;
  var paused = false;

  function byId(id) {
    return document.getElementById(id);
  }

  // DOM updates that do nothing when nothing changed, so that the page
  // (and a screen reader following a live region) is not disturbed.
  function setText(element, text) {
    text = String(text);
    if (element.textContent !== text) {
      element.textContent = text;
    }
  }

  function setAttr(element, name, value) {
    value = String(value);
    if (element.getAttribute(name) !== value) {
      element.setAttribute(name, value);
    }
  }

  function setHidden(element, hidden) {
    if (element.hidden !== hidden) {
      element.hidden = hidden;
    }
  }

  function number(value) {
    return typeof value === 'number' && isFinite(value) ? value : null;
  }

  function text(value) {
    return value === null || value === undefined ? '' : String(value);
  }

  function list(value) {
    return Array.isArray(value) ? value : [];
  }

  function object(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
  }

  // newest first, whatever order the snapshot lists them in
  function newestFirst(items, limit) {
    return items.map(object).sort(function (a, b) {
      return (number(b.time) || 0) - (number(a.time) || 0);
    }).slice(0, limit);
  }

  function stateOf(value) {
    return STATES.indexOf(value) >= 0 ? value : 'unknown';
  }

  // numbers and times

  var counts = new Intl.NumberFormat(undefined, {maximumFractionDigits: 0});
  var decimals = new Intl.NumberFormat(undefined, {maximumFractionDigits: 1});
  var timeOfDay = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit',
                                                      hourCycle: 'h23'});
  var dateAndTime = new Intl.DateTimeFormat(undefined, {month: 'short', day: 'numeric', hour: '2-digit',
                                                        minute: '2-digit', second: '2-digit', hourCycle: 'h23'});

  function count(value) {
    value = number(value);
    return value === null ? '—' : counts.format(value);
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var d = Math.floor(seconds / 86400);
    var h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60);
    var s = seconds % 60;
    if (d > 0) {
      return d + ' d ' + h + ' h';
    }
    if (h > 0) {
      return h + ' h ' + m + ' min';
    }
    if (m > 0) {
      return m + ' min ' + s + ' s';
    }
    return s + ' s';
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function clockTime(t, now) {
    var date = new Date(t * 1000);
    return sameDay(date, new Date(now * 1000)) ? timeOfDay.format(date) : dateAndTime.format(date);
  }

  function iso(t) {
    return new Date(t * 1000).toISOString();
  }

  function ago(t, now) {
    var age = now - t;
    return age < 1 ? 'just now' : duration(age) + ' ago';
  }

  // A cell showing a time: "12:01:03" and, below it, "3 min ago".
  function fillTime(cell, t, now) {
    t = number(t);
    if (t === null) {
      if (cell.firstChild === null || cell.firstChild.nodeType !== Node.TEXT_NODE) {
        cell.replaceChildren(document.createTextNode(''));
      }
      setText(cell, 'never');
      setAttr(cell, 'data-time', '');
      return;
    }
    var time = cell.querySelector('time');
    var age = cell.querySelector('.ago');
    if (time === null || age === null) {
      time = document.createElement('time');
      age = document.createElement('span');
      age.className = 'ago';
      cell.replaceChildren(time, age);
    }
    setText(time, clockTime(t, now));
    setAttr(time, 'datetime', iso(t));
    setText(age, ago(t, now));
    setAttr(cell, 'data-time', t);
  }

  function fillTextCell(cell, value) {
    setText(cell, value);
  }

  // Table bodies are updated in place: a row per item, its cells refilled.
  function fillRows(tbody, items, columns) {
    while (tbody.rows.length > items.length) {
      tbody.deleteRow(-1);
    }
    items.forEach(function (item, i) {
      var row = tbody.rows[i];
      if (row === undefined) {
        row = tbody.insertRow(-1);
        columns.forEach(function (column) {
          var cell = document.createElement('td');
          cell.className = column.name;
          row.appendChild(cell);
        });
      }
      columns.forEach(function (column, j) {
        column.fill(row.cells[j], item);
      });
    });
  }

  // the tunnel

  function renderTunnel(tunnel, now) {
    var version = text(tunnel.version);
    setText(byId('tunnel-version'), version ? 'version ' + version : 'version unknown');
    var started = number(tunnel.started);
    setText(byId('tunnel-uptime'), started === null ? '—' : duration(now - started));
    var startedElement = byId('tunnel-started');
    setText(startedElement, started === null ? '—' : clockTime(started, now));
    if (started !== null) {
      setAttr(startedElement, 'datetime', iso(started));
    }
    var nowElement = byId('tunnel-now');
    setText(nowElement, clockTime(now, now));
    setAttr(nowElement, 'datetime', iso(now));
    var ready = byId('tunnel-ready');
    setText(ready, tunnel.ready === true ? 'yes' : tunnel.ready === false ? 'no' : '—');
    setAttr(ready, 'data-ready', tunnel.ready === true ? 'yes' : 'no');
  }

  // the ends

  var ROLE_NAMES = {in: 'in end', out: 'out end'};
  var STATE_WORDS = {up: 'is up', down: 'is down', connecting: 'is connecting', failed: 'has failed',
                     unknown: 'is in an unknown state'};

  function renderEnd(role, end, now) {
    var card = byId('end-' + role);
    var state = stateOf(end.state);
    setAttr(card, 'data-state', state);
    var badge = byId('end-' + role + '-state');
    setText(badge, end.state === undefined ? 'unknown' : text(end.state));
    setAttr(badge, 'data-state', state);
    var since = number(end.since);
    setText(byId('end-' + role + '-since'), since === null ? '' : 'for ' + duration(now - since) +
            ', since ' + clockTime(since, now));
    setText(byId('end-' + role + '-connector'), text(end.connector) || '—');
    var peers = list(end.peers).map(object);
    setText(byId('end-' + role + '-peer-count'), peers.length ? '(' + peers.length + ')' : '(none)');
    var table = byId('end-' + role + '-peers');
    setHidden(table.tHead, peers.length === 0);
    fillRows(table.tBodies[0], peers, [
      {name: 'address', fill: function (cell, peer) { fillTextCell(cell, text(peer.address)); }},
      {name: 'since', fill: function (cell, peer) { fillTime(cell, peer.since, now); }}
    ]);
  }

  function renderLink(ends, now) {
    var byRole = {};
    ends.forEach(function (end) {
      if (end.role === 'in' || end.role === 'out') {
        byRole[end.role] = end;
      }
    });
    ['in', 'out'].forEach(function (role) {
      renderEnd(role, byRole[role] || {}, now);
    });
    // one sentence for the whole link, announced politely when it changes
    var worst = 'up';
    var why = [];
    ['failed', 'down', 'connecting', 'unknown'].some(function (state) {
      ['in', 'out'].forEach(function (role) {
        if (stateOf((byRole[role] || {}).state) === state) {
          why.push('the ' + ROLE_NAMES[role] + ' ' + STATE_WORDS[state]);
        }
      });
      if (why.length) {
        worst = state;
        return true;
      }
      return false;
    });
    var summary = byId('link-summary');
    setAttr(summary, 'data-state', worst);
    if (worst === 'up') {
      setText(summary, 'Link up: both ends are up.');
    } else {
      setText(summary, 'Link ' + worst + ': ' + why.join(' and ') + '.');
    }
    // the tab says it too, for a page left open in the background
    var title = 'Link ' + worst + ' · uhppoted-tunnel';
    if (document.title !== title) {
      document.title = title;
    }
  }

  // traffic

  var TOTALS = ['requests', 'replies', 'timeouts', 'dropped', 'events', 'unrouted'];

  function renderTotals(totals) {
    TOTALS.forEach(function (name) {
      var element = byId('total-' + name);
      setText(element, count(totals[name]));
      setAttr(element, 'data-value', number(totals[name]) === null ? '' : totals[name]);
    });
  }

  var CHART = {width: 240, height: 64, bars: 60};

  function makePlot(figure) {
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + CHART.width + ' ' + CHART.height);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'plot-svg');
    var grid = document.createElementNS(SVG, 'line');
    grid.setAttribute('class', 'grid');
    grid.setAttribute('x1', 0);
    grid.setAttribute('x2', CHART.width);
    grid.setAttribute('y1', 1);
    grid.setAttribute('y2', 1);
    svg.appendChild(grid);
    var base = document.createElementNS(SVG, 'line');
    base.setAttribute('class', 'baseline');
    base.setAttribute('x1', 0);
    base.setAttribute('x2', CHART.width);
    base.setAttribute('y1', CHART.height - 0.5);
    base.setAttribute('y2', CHART.height - 0.5);
    svg.appendChild(base);
    var step = CHART.width / CHART.bars;
    for (var i = 0; i < CHART.bars; i++) {
      var bar = document.createElementNS(SVG, 'rect');
      bar.setAttribute('class', 'bar');
      bar.setAttribute('x', (i * step + 0.5).toFixed(2));
      bar.setAttribute('width', (step - 1).toFixed(2));
      bar.setAttribute('y', CHART.height);
      bar.setAttribute('height', 0);
      svg.appendChild(bar);
    }
    figure.querySelector('.plot').appendChild(svg);
    return svg;
  }

  // a round number at or above the peak, for the chart's top line
  function scaleFor(peak) {
    if (peak <= 1) {
      return 1;
    }
    var magnitude = Math.pow(10, Math.floor(Math.log10(peak)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * magnitude >= peak) {
        return steps[i] * magnitude;
      }
    }
    return 10 * magnitude;
  }

  function renderChart(name, values, interval) {
    var figure = byId('chart-' + name);
    var svg = figure.querySelector('svg') || makePlot(figure);
    values = values.slice(-CHART.bars).map(function (v) { return Math.max(0, number(v) || 0); });
    while (values.length < CHART.bars) {
      values.unshift(0);
    }
    var perSecond = values.map(function (v) { return v / interval; });
    var peak = Math.max.apply(null, perSecond);
    var scale = scaleFor(peak);
    var bars = svg.querySelectorAll('.bar');
    var room = CHART.height - 2;
    perSecond.forEach(function (v, i) {
      var h = v > 0 ? Math.max(1, v / scale * room) : 0;
      setAttr(bars[i], 'y', (CHART.height - h).toFixed(2));
      setAttr(bars[i], 'height', h.toFixed(2));
    });
    var sum = values.reduce(function (a, b) { return a + b; }, 0);
    var latest = perSecond[perSecond.length - 1];
    setAttr(figure, 'data-total', sum);
    setText(byId('chart-' + name + '-text'), 'Now ' + decimals.format(latest) + '/s, peak ' +
            decimals.format(peak) + '/s, ' + counts.format(sum) + ' in the last minute (scale: ' +
            decimals.format(scale) + '/s).');
  }

  function renderRates(rates) {
    var interval = number(rates.interval);
    if (interval === null || interval <= 0) {
      interval = 1;
    }
    renderChart('requests', list(rates.requests), interval);
    renderChart('events', list(rates.events), interval);
  }

  // controllers, events, warnings

  function renderControllers(controllers, now) {
    controllers = controllers.map(object).slice().sort(function (a, b) {
      return (number(a.serial) || 0) - (number(b.serial) || 0);
    });
    setText(byId('controllers-count'), controllers.length ? '(' + controllers.length + ')' : '');
    fillRows(byId('controllers').tBodies[0], controllers, [
      {name: 'serial', fill: function (cell, c) { fillTextCell(cell, text(c.serial)); }},
      {name: 'address', fill: function (cell, c) { fillTextCell(cell, text(c.address) || '—'); }},
      {name: 'last-reply', fill: function (cell, c) { fillTime(cell, c.last_reply, now); }},
      {name: 'last-event', fill: function (cell, c) { fillTime(cell, c.last_event, now); }}
    ]);
    setHidden(byId('controllers').parentNode, controllers.length === 0);
    setHidden(byId('controllers-empty'), controllers.length > 0);
  }

  // a host with thousands of sites: the page shows the first ones, by identity
  var MAX_SITE_ROWS = 100;

  function renderSites(sites, now) {
    sites = sites.map(object).slice().sort(function (a, b) {
      var x = text(a.identity) + ' ' + text(a.address), y = text(b.identity) + ' ' + text(b.address);
      return x < y ? -1 : (x > y ? 1 : 0);
    });
    setText(byId('sites-count'), sites.length ? '(' + sites.length + ')' : '');
    fillRows(byId('sites').tBodies[0], sites.slice(0, MAX_SITE_ROWS), [
      {name: 'identity', fill: function (cell, s) { fillTextCell(cell, text(s.identity)); }},
      {name: 'address', fill: function (cell, s) { fillTextCell(cell, text(s.address)); }},
      {name: 'since', fill: function (cell, s) { fillTime(cell, s.since, now); }},
      {name: 'serials', fill: function (cell, s) { fillTextCell(cell, list(s.serials).map(text).join(', ') || '—'); }},
      {name: 'last-seen', fill: function (cell, s) { fillTime(cell, s.last_seen, now); }}
    ]);
    var more = sites.length - MAX_SITE_ROWS;
    setText(byId('sites-more'), more > 0 ? 'And ' + more + ' more: see status.json.' : '');
    setHidden(byId('sites-more'), more <= 0);
    setHidden(byId('sites').parentNode, sites.length === 0);
    setHidden(byId('sites-empty'), sites.length > 0);
  }

  function granted(event) {
    if (event.granted === true) {
      return 'granted';
    }
    if (event.granted === false) {
      return 'denied';
    }
    return '—';
  }

  function renderEvents(events, now) {
    events = newestFirst(events, MAX_EVENTS);
    fillRows(byId('events').tBodies[0], events, [
      {name: 'time', fill: function (cell, e) { fillTime(cell, e.time, now); }},
      {name: 'serial', fill: function (cell, e) { fillTextCell(cell, text(e.serial)); }},
      {name: 'index', fill: function (cell, e) { fillTextCell(cell, text(e.index)); }},
      {name: 'type', fill: function (cell, e) { fillTextCell(cell, text(e.type) || '—'); }},
      {name: 'door', fill: function (cell, e) {
        fillTextCell(cell, e.door === null || e.door === undefined ? '—' : text(e.door));
      }},
      {name: 'access', fill: function (cell, e) {
        fillTextCell(cell, granted(e));
        setAttr(cell, 'data-access', granted(e));
      }},
      {name: 'card-number', fill: function (cell, e) {
        fillTextCell(cell, e.card === null || e.card === undefined ? '—' : text(e.card));
      }}
    ]);
    setHidden(byId('events').parentNode, events.length === 0);
    setHidden(byId('events-empty'), events.length > 0);
  }

  function renderWarnings(warnings, now) {
    warnings = newestFirst(warnings, MAX_WARNINGS);
    var ol = byId('warnings');
    while (ol.children.length > warnings.length) {
      ol.removeChild(ol.lastElementChild);
    }
    warnings.forEach(function (warning, i) {
      var li = ol.children[i];
      if (li === undefined) {
        li = document.createElement('li');
        var when = document.createElement('span');
        when.className = 'when';
        var badge = document.createElement('span');
        badge.className = 'level';
        var message = document.createElement('span');
        message.className = 'message';
        li.append(when, badge, message);
        ol.appendChild(li);
      }
      var level = text(warning.level) || 'warn';
      setAttr(li, 'data-level', level === 'error' || level === 'critical' ? 'error' : 'warn');
      fillTime(li.querySelector('.when'), warning.time, now);
      setText(li.querySelector('.level'), level);
      setText(li.querySelector('.message'), text(warning.text));
    });
    setHidden(ol, warnings.length === 0);
    setHidden(byId('warnings-empty'), warnings.length > 0);
  }

  function render(snapshot) {
    snapshot = object(snapshot);
    var tunnel = object(snapshot.tunnel);
    var now = number(tunnel.now);
    if (now === null) {
      now = Date.now() / 1000;
    }
    renderTunnel(tunnel, now);
    renderLink(list(snapshot.ends).map(object), now);
    renderTotals(object(snapshot.totals));
    renderRates(object(snapshot.rates));
    renderControllers(list(snapshot.controllers), now);
    renderSites(list(snapshot.sites), now);
    renderEvents(list(snapshot.events), now);
    renderWarnings(list(snapshot.warnings), now);
    document.body.setAttribute('data-loaded', 'true');
  }

  // the stream

  var FEED_TEXT = {connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', paused: 'Paused'};

  function setFeed(state) {
    var live = byId('live');
    setAttr(live, 'data-state', state);
    setText(byId('live-text'), FEED_TEXT[state]);
  }

  function onMessage(message) {
    var snapshot;
    try {
      snapshot = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    lastMessage = Date.now();
    retryDelay = 1000;
    setFeed('live');
    render(snapshot);
  }

  function disconnect() {
    if (source !== null) {
      source.close();
      source = null;
    }
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
    }
  }

  function reconnectLater() {
    disconnect();
    setFeed('reconnecting');
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
  }

  function connect() {
    disconnect();
    if (paused) {
      return;
    }
    lastMessage = Date.now();
    source = new EventSource(STREAM);
    source.onmessage = onMessage;
    source.onerror = function () {
      // CONNECTING: the browser retries by itself (after the server's
      // retry: hint); CLOSED (a 503, say): it has given up, so do it here
      if (source !== null && source.readyState === EventSource.CLOSED) {
        reconnectLater();
      } else {
        setFeed('reconnecting');
      }
    };
  }

  function watch() {
    // a stream that went quiet without an error (a stuck proxy, a
    // suspended laptop) is replaced
    if (!paused && source !== null && Date.now() - lastMessage > STALE_MS) {
      reconnectLater();
    }
  }

  function togglePause() {
    paused = !paused;
    var button = byId('pause');
    setAttr(button, 'aria-pressed', paused ? 'true' : 'false');
    if (paused) {
      disconnect();
      setFeed('paused');
    } else {
      setFeed('connecting');
      retryDelay = 1000;
      connect();
    }
  }

  function start() {
    byId('pause').addEventListener('click', togglePause);
    ['requests', 'events'].forEach(function (name) {
      makePlot(byId('chart-' + name));
    });
    connect();
    setInterval(watch, 1000);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
