// kup dashboard: one framework-free script. It reads the daemon's /v1 API with the token the
// user signed in with (kept in sessionStorage: this tab only), follows the event log's long
// poll and re-reads only what the new events name. Every change goes through the same /v1
// requests as the CLI. Nothing is ever written into the page as HTML: text only.
'use strict';

const TOKEN_KEY = 'kup-token';
const STATES = {
  waiting: { glyph: '○', label: 'waiting' },
  'in-flight': { glyph: '↻', label: 'in flight' },
  done: { glyph: '✓', label: 'done' },
  failed: { glyph: '✕', label: 'failed' },
  skipped: { glyph: '↷', label: 'skipped' },
  locked: { glyph: '⊘', label: 'locked' },
  idle: { glyph: '·', label: 'idle' },
};
const STAGE_LABELS = {
  'kube-upgrade-start': 'start',
  'kube-upgrade-download-images': 'download images',
  'kube-upgrade-first-control-plane': 'first control plane',
  'kube-upgrade-networking': 'networking',
  'kube-upgrade-second-control-plane': 'second control plane',
  'kube-upgrade-kubelets-controller': 'controller kubelets',
  'kube-upgrade-kubelets-workers': 'worker kubelets',
  'kube-upgrade-complete': 'complete',
};
// Beyond this many changed hosts, one full read costs less than naming them.
const MAX_NAMED = 150;
const MAX_EVENTS_KEPT = 5000;
const MAX_EVENT_ROWS = 400;

const S = {
  token: null,
  role: 'reader',
  gen: 0,
  lastSeq: 0,
  timeScale: 1,
  cluster: null,
  strategy: null,
  alarms: [],
  order: [],
  tiles: new Map(),
  cells: new Map(),
  dirty: new Set(),
  frame: 0,
  focus: 0,
  selected: null,
  events: [],
  // Each opening of a host's panel, and each re-read of its row: a late answer is dropped.
  hostOpenings: 0,
  rowReads: 0,
  // The daemon's clock minus the browser's, from the last view: the timeline's "now".
  skew: 0,
  dialogs: 0,
  hostEvents: new Set(),
  ticker: 0,
};

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class HttpError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

/** A /v1 request with the token; the error's message is the daemon's one-line reason. Every
 *  request has a deadline, so a connection dropped silently (a proxy's idle timeout) is
 *  noticed rather than waited on for ever. */
async function api(path, { method = 'GET', body, timeout = 20000 } = {}) {
  const headers = { Authorization: 'Bearer ' + S.token, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeout);
  let res;
  let text;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal: abort.signal,
    });
    text = await res.text();
  } catch (e) {
    const why = abort.signal.aborted ? 'no answer in ' + timeout / 1000 + ' s' : e.message;
    throw new HttpError(0, 'the daemon cannot be reached (' + why + ')');
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    let reason = res.statusText || 'HTTP ' + res.status;
    if (data && typeof data.error_message === 'string') {
      try {
        reason = JSON.parse(data.error_message).faultstring || data.error_message;
      } catch (e) {
        reason = data.error_message;
      }
    }
    throw new HttpError(res.status, reason);
  }
  return data;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function human(seconds) {
  if (!isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + (s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function say(text) {
  $('status').textContent = text;
}

// ---- signing in -------------------------------------------------------------------------

async function signIn(token) {
  S.token = token;
  // The one check of the token: what follows retries on its own.
  const who = await api('/v1/token');
  S.role = who.role;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  $('role').textContent = S.role === 'admin' ? 'admin' : 'read-only';
  $('actions').hidden = S.role !== 'admin';
  run(++S.gen);
}

function signOut(message) {
  S.gen++;
  S.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  pending.hosts.clear();
  pending.any = false;
  pending.full = false;
  S.order = [];
  S.tiles = new Map();
  S.cells = new Map();
  S.strategy = null;
  S.cluster = null;
  S.alarms = [];
  S.events = [];
  clearInterval(S.ticker);
  S.ticker = 0;
  S.dialogs++;
  closeHost();
  if ($('confirm').open) $('confirm').close();
  // Nothing of this session stays on the page for the next one.
  for (const id of ['grid', 'cluster', 'strategy', 'alarms', 'timeline', 'timeline-summary', 'legend', 'events', 'status']) {
    $(id).replaceChildren();
  }
  delete $('cluster').dataset.key;
  $('action-buttons').replaceChildren();
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

/** Reads the whole view, then follows the event log; a daemon that cannot answer yet (a
 *  failover, the cluster unreachable) is asked again, with a growing pause. */
async function run(gen) {
  let backoff = 1000;
  while (gen === S.gen) {
    try {
      await start(gen);
      await follow(gen);
      return;
    } catch (e) {
      if (gen !== S.gen) return;
      if (e.status === 401) return signOut('The token is no longer accepted: ' + e.message);
      setLive(false, e.message);
      say('Cannot read the cluster: ' + e.message + '. Trying again.');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }
}

async function start(gen) {
  const view = await api('/v1/dashboard');
  if (gen !== S.gen) return;
  S.lastSeq = view.last_seq;
  applyView(view, true);
  // What the first-load benchmark measures: the view read and the grid laid out.
  requestAnimationFrame(() => {
    void $('grid').offsetHeight;
    performance.mark('kup-first-render');
  });
  const recent = await api('/v1/events?after=' + Math.max(0, view.last_seq - 300) + '&limit=300');
  if (gen !== S.gen) return;
  S.events = recent.events.filter((e) => e.seq <= view.last_seq);
  renderEvents();
  setLive(true);
  say('');
}

// ---- following the event log ------------------------------------------------------------

/** The long poll, until the session ends; throws what it cannot get past (the caller starts
 *  again from a whole view, so nothing missed meanwhile stays missed). */
async function follow(gen) {
  let failures = 0;
  while (gen === S.gen) {
    let r;
    try {
      r = await api('/v1/events?after=' + S.lastSeq + '&wait=25&limit=2000', { timeout: 40000 });
    } catch (e) {
      if (e.status === 401 || ++failures > 3) throw e;
      setLive(false, e.message);
      // Reconnecting only: while connected, nothing is read on a timer.
      await sleep(1000 * failures);
      continue;
    }
    if (gen !== S.gen) return;
    failures = 0;
    setLive(true);
    if (r.events.length) {
      S.lastSeq = r.events[r.events.length - 1].seq;
      onEvents(r.events);
    }
  }
}

function setLive(on, why) {
  const el = $('live');
  const text = on ? 'live' : 'reconnecting';
  // Written only when it changes: a screen reader announces every write.
  if (el.textContent !== text) el.textContent = text;
  el.dataset.live = on ? 'yes' : 'no';
  el.title = on ? 'Following the event log' : why || '';
}

const pending = { hosts: new Set(), any: false, full: false, running: false, host: false };

function onEvents(events) {
  S.events.push(...events);
  if (S.events.length > MAX_EVENTS_KEPT) S.events.splice(0, S.events.length - MAX_EVENTS_KEPT);
  prependEvents(events);
  for (const e of events) {
    if (S.tiles.has(e.subject)) pending.hosts.add(e.subject);
    if (S.selected === e.subject) {
      appendHostEvent(e);
      pending.host = true;
    }
  }
  pending.any = true;
  refresh();
}

/** The query naming `names`, or null when a whole read is cheaper (or the URL would grow
 *  past what proxies take). */
function namedQuery(names) {
  if (names.length > MAX_NAMED) return null;
  const q = '?hosts=' + encodeURIComponent(names.join(','));
  return q.length > 4000 ? null : q;
}

/** Re-reads what the events named: their hosts' tiles, and the cluster and strategy (small).
 *  One read at a time; events that arrive meanwhile are folded into the next. A read that
 *  fails is tried again after a pause. */
async function refresh() {
  if (pending.running) return;
  pending.running = true;
  const gen = S.gen;
  let backoff = 1000;
  try {
    while (pending.any && gen === S.gen) {
      const names = [...pending.hosts];
      const q = pending.full ? null : namedQuery(names);
      const full = q === null;
      const host = pending.host;
      pending.hosts.clear();
      pending.any = false;
      pending.full = false;
      pending.host = false;
      let view;
      try {
        view = await api('/v1/dashboard' + (full ? '' : q));
      } catch (e) {
        if (gen !== S.gen) return;
        names.forEach((n) => pending.hosts.add(n));
        pending.full = pending.full || full;
        pending.host = pending.host || host;
        pending.any = true;
        say('Could not read the cluster: ' + e.message + '. Trying again.');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 15000);
        continue;
      }
      if (gen !== S.gen) return;
      if (backoff > 1000) say('');
      backoff = 1000;
      const before = S.strategy;
      const targetMoved = !full && String(view.cluster.target) !== String(S.cluster && S.cluster.target);
      applyView(view, full);
      if (host && S.selected) reloadHostRow(S.selected);
      if (targetMoved || view.cluster.host_count !== S.order.length || strategyMoved(before, view.strategy)) {
        pending.full = true;
        pending.any = true;
      }
      // A batch forms, and hosts leave it, without events of their own: read both batches.
      const was = before ? before.batch : [];
      const now = view.strategy ? view.strategy.batch : [];
      if (was.join(',') !== now.join(',')) {
        [...was, ...now].forEach((n) => S.tiles.has(n) && pending.hosts.add(n));
        pending.any = true;
      }
    }
  } finally {
    pending.running = false;
    // A session that began while this one's read was out gets its own.
    if (pending.any && gen !== S.gen) refresh();
  }
}

/** Whether the strategy changed in a way that changes tiles without their hosts' events: a
 *  new or deleted strategy, a new state, a host left out. */
function strategyMoved(a, b) {
  if (!a || !b) return Boolean(a) !== Boolean(b);
  return a.uuid !== b.uuid || a.state !== b.state || a.skipped !== b.skipped;
}

// ---- the whole view ---------------------------------------------------------------------

function applyView(view, full) {
  S.timeScale = view.time_scale;
  S.skew = Date.parse(view.now) - Date.now();
  S.cluster = view.cluster;
  S.strategy = view.strategy;
  S.alarms = view.alarms;
  renderCluster();
  renderAlarms();
  renderStrategy();
  renderTimeline();
  tick();
  renderActions();
  if (full) setTiles(view.hosts);
  else view.hosts.forEach(updateTile);
  renderLegend();
  if (S.selected && view.hosts.some((t) => t.hostname === S.selected)) renderHostTile();
}

function renderCluster() {
  const c = S.cluster;
  const parts = [];
  if (c.version) parts.push(['Kubernetes', c.version]);
  if (c.from_version || c.to_version) parts.push(['Upgrading', (c.from_version || '?') + ' → ' + (c.to_version || '?')]);
  parts.push(['Upgrade', c.upgrade_state || 'none']);
  if (S.strategy) parts.push(['Strategy', S.strategy.state]);
  parts.push(['Hosts', String(c.host_count)]);
  // Rebuilt only when it changes: the line is announced (aria-live) on every change.
  const key = JSON.stringify(parts);
  if ($('cluster').dataset.key === key) return;
  $('cluster').dataset.key = key;
  $('cluster').replaceChildren(...parts.map(([k, v]) => h('span', { 'data-k': k }, k + ': ', h('b', { text: v }))));
}

function renderAlarms() {
  const list = $('alarms');
  if (!S.alarms.length) {
    list.replaceChildren(h('li', { text: 'No alarms.' }));
    return;
  }
  list.replaceChildren(
    ...S.alarms.map((a) =>
      h('li', {}, h('span', { class: 'sev sev-' + a.severity, text: a.severity }), a.alarm_id + ' ' + a.reason_text + ' (' + a.entity_instance_id + ')'),
    ),
  );
}

function renderStrategy() {
  const st = S.strategy;
  const box = $('strategy');
  if (!st) {
    box.replaceChildren(h('p', { text: 'No strategy. The upgrade runs step by step, or starts from Actions.' }));
    return;
  }
  const facts = [
    ['To', st.to_version + ' (' + st.mode + (st.partial_ok ? ', partial OK' : '') + ', up to ' + st.max_parallel_worker_hosts + ' workers at a time)'],
    ['State', st.state],
    ['Phase', st.phase],
    ['Stage', st.stage_name || '—'],
    ['Step', (st.step_name || '—') + (st.entity_names.length ? ': ' + st.entity_names.join(', ') : '')],
    ['Result', st.result + (st.reason ? ': ' + st.reason : '')],
    ['Skipped hosts', String(st.skipped)],
    ['Predicted', human(st.predicted_seconds * S.timeScale) + ' when built (lower bound ' + human(st.lower_bound_seconds * S.timeScale) + ')'],
  ];
  const dl = h('dl', { class: 'facts' });
  dl.append(h('dt', { text: 'Completion' }), h('dd', {}, h('progress', { max: 100, value: st.completion_percentage, 'aria-label': 'Completion' }), ' ' + st.completion_percentage + '%'));
  for (const [k, v] of facts) dl.append(h('dt', { text: k }), h('dd', { 'data-k': k, text: v }));
  box.replaceChildren(dl);
}

// ---- the grid ---------------------------------------------------------------------------

function setTiles(tiles) {
  const same = tiles.length === S.order.length && tiles.every((t, i) => t.hostname === S.order[i]);
  if (same) {
    tiles.forEach(updateTile);
    return;
  }
  S.tiles = new Map(tiles.map((t) => [t.hostname, t]));
  S.order = tiles.map((t) => t.hostname);
  const grid = $('grid');
  grid.className = 'grid ' + (tiles.length > 600 ? 'small' : tiles.length > 120 ? 'medium' : 'large');
  const frag = document.createDocumentFragment();
  S.cells = new Map();
  S.focus = Math.min(S.focus, Math.max(0, tiles.length - 1));
  tiles.forEach((t, i) => {
    const cell = h('div', { class: 'cell', role: 'option', tabindex: i === S.focus ? 0 : -1, 'data-i': i, 'aria-selected': 'false' });
    S.cells.set(t.hostname, cell);
    paintCell(cell, t);
    frag.append(cell);
  });
  grid.replaceChildren(frag);
  grid.setAttribute('data-hosts', String(tiles.length));
}

function updateTile(t) {
  const old = S.tiles.get(t.hostname);
  if (!old) return;
  S.tiles.set(t.hostname, t);
  // Unchanged tiles are left alone: a whole read repaints only what moved.
  if (JSON.stringify(old) !== JSON.stringify(t)) markDirty(t.hostname);
}

/** Cells are repainted once per frame, however many tiles changed. */
function markDirty(name) {
  S.dirty.add(name);
  if (!S.frame) {
    S.frame = requestAnimationFrame(() => {
      S.frame = 0;
      for (const n of S.dirty) {
        const cell = S.cells.get(n);
        const t = S.tiles.get(n);
        if (cell && t) paintCell(cell, t);
      }
      S.dirty.clear();
    });
  }
}

function paintCell(cell, t) {
  const st = STATES[t.state] || { glyph: '?', label: t.state };
  const text = t.hostname + ': ' + st.label + (t.reason ? ' (' + t.reason + ')' : '');
  cell.dataset.s = t.state;
  cell.dataset.host = t.hostname;
  cell.title = text + ' · kubelet ' + t.kubelet_version;
  cell.setAttribute('aria-label', text);
  if (S.order.length <= 120) {
    cell.replaceChildren(h('span', { class: 'glyph', 'aria-hidden': 'true', text: st.glyph }), h('span', { class: 'name', text: t.hostname }));
  } else if (cell.firstChild) {
    // Small cells take their glyph from the stylesheet (by data-s): not colour alone, and no
    // text node per cell to lay out.
    cell.replaceChildren();
  }
}

function renderLegend() {
  const counts = {};
  for (const t of S.tiles.values()) counts[t.state] = (counts[t.state] || 0) + 1;
  $('legend').replaceChildren(
    ...Object.entries(STATES).map(([k, v]) =>
      h('li', { 'data-s-count': k, 'data-count': counts[k] || 0 }, h('span', { class: 'swatch', 'data-s': k, 'aria-hidden': 'true', text: v.glyph }), v.label + ' ' + (counts[k] || 0)),
    ),
  );
}

function columns() {
  const cells = $('grid').children;
  if (cells.length < 2) return 1;
  const top = cells[0].offsetTop;
  for (let i = 1; i < cells.length; i++) if (cells[i].offsetTop !== top) return i;
  return cells.length;
}

function moveFocus(i) {
  const cells = $('grid').children;
  if (!cells.length) return;
  i = Math.max(0, Math.min(cells.length - 1, i));
  cells[S.focus] && cells[S.focus].setAttribute('tabindex', '-1');
  S.focus = i;
  cells[i].setAttribute('tabindex', '0');
  cells[i].focus();
}

function onGridKey(e) {
  const cols = columns();
  const moves = {
    ArrowRight: 1,
    ArrowLeft: -1,
    ArrowDown: cols,
    ArrowUp: -cols,
    PageDown: cols * 10,
    PageUp: -cols * 10,
  };
  if (e.key in moves) moveFocus(S.focus + moves[e.key]);
  else if (e.key === 'Home') moveFocus(0);
  else if (e.key === 'End') moveFocus(S.order.length - 1);
  else if (e.key === 'Enter' || e.key === ' ') selectHost(S.order[S.focus]);
  else return;
  e.preventDefault();
}

// ---- one host ---------------------------------------------------------------------------

async function selectHost(name) {
  if (!name) return;
  if (S.selected && S.cells.get(S.selected)) S.cells.get(S.selected).setAttribute('aria-selected', 'false');
  S.selected = name;
  const cell = S.cells.get(name);
  if (cell) cell.setAttribute('aria-selected', 'true');
  const panel = $('host');
  panel.hidden = false;
  $('host-title').textContent = name;
  const body = $('host-body');
  body.replaceChildren(
    h('div', { id: 'host-tile' }),
    h('div', { id: 'host-actions', class: 'buttons' }),
    h('h3', { text: 'Host' }),
    h('div', { id: 'host-row', text: 'Reading…' }),
    h('h3', { text: 'Safety of locking it' }),
    h('div', { id: 'host-findings', text: 'Reading…' }),
    h('h3', { text: 'Events' }),
    h('ol', { id: 'host-events', class: 'event-list' }),
  );
  renderHostTile();
  S.hostEvents = new Set();
  const enc = encodeURIComponent(name);
  const opening = ++S.hostOpenings;
  // A host's whole history is small (tens of events an upgrade); the newest are shown.
  const [row, findings, events] = await Promise.allSettled([
    api('/v1/ihosts/' + enc),
    api('/v1/ihosts/' + enc + '/findings'),
    api('/v1/events?subject=' + enc + '&limit=10000'),
  ]);
  if (S.selected !== name || opening !== S.hostOpenings) return;
  $('host-row').replaceChildren(row.status === 'fulfilled' ? hostRow(row.value) : h('p', { class: 'error', text: row.reason.message }));
  $('host-findings').replaceChildren(findings.status === 'fulfilled' ? findingsView(findings.value) : h('p', { class: 'error', text: findings.reason.message }));
  if (events.status === 'fulfilled') events.value.events.slice(-MAX_EVENT_ROWS).forEach(appendHostEvent);
  renderHostActions(row.status === 'fulfilled' ? row.value : null);
}

/** The open host's row again, after its own events (a lock ends, a step runs). Its findings
 *  (an analysis of every pod) are read when it opens and before a lock, not on every event. */
async function reloadHostRow(name) {
  const opening = S.hostOpenings;
  const reads = ++S.rowReads;
  let row;
  try {
    row = await api('/v1/ihosts/' + encodeURIComponent(name));
  } catch (e) {
    return;
  }
  // A newer read (or another host) has the panel now.
  if (S.selected !== name || opening !== S.hostOpenings || reads !== S.rowReads || !$('host-row')) return;
  $('host-row').replaceChildren(hostRow(row));
  renderHostActions(row);
}

function renderHostTile() {
  const t = S.tiles.get(S.selected);
  const box = $('host-tile');
  if (!t || !box) return;
  const st = STATES[t.state] || { glyph: '?', label: t.state };
  const dl = h('dl', { class: 'facts' });
  const facts = [
    ['State', st.glyph + ' ' + st.label + (t.reason ? ' (' + t.reason + ')' : '')],
    ['Upgrade status', t.status || '—'],
    ['Control plane', t.control_plane_version],
    ['Kubelet', t.kubelet_version],
  ];
  for (const [k, v] of facts) dl.append(h('dt', { text: k }), h('dd', { 'data-k': k, text: v }));
  box.replaceChildren(dl);
}

function hostRow(r) {
  const dl = h('dl', { class: 'facts' });
  const facts = [
    ['Personality', r.personality + (r.active_controller ? ' (active)' : '')],
    ['Administrative', r.administrative],
    ['Operational', r.operational],
    ['Availability', r.availability],
    ['Task', r.task || '—'],
    ['Roles', r.roles.join(', ') || '—'],
    ['Id', String(r.id)],
  ];
  for (const [k, v] of facts) dl.append(h('dt', { text: k }), h('dd', { text: v }));
  return dl;
}

function findingsView(f) {
  const box = h('div', {});
  box.append(h('p', {}, 'Verdict: ', h('span', { class: 'verdict-' + f.verdict, text: f.verdict }), f.roles.length ? ' · roles ' + f.roles.join(', ') : ''));
  if (f.findings.length) {
    box.append(h('ul', { class: 'findings' }, f.findings.map((x) => h('li', {}, h('span', { class: 'verdict-' + x.verdict, text: x.verdict }), ' ' + x.subject + ': ' + x.reason))));
  } else {
    box.append(h('p', { text: 'Nothing would be lost by draining it alone.' }));
  }
  if (f.target) {
    box.append(h('p', { text: 'Ready for ' + f.target + ': ' + (f.ready ? 'yes' : 'no — ' + f.problems.join('; ')) }));
  }
  return box;
}

/** Newest first, each once, in order of sequence whatever order they arrive in (the live
 *  stream and the host's history overlap). */
function appendHostEvent(e) {
  const list = $('host-events');
  if (!list || S.hostEvents.has(e.seq)) return;
  S.hostEvents.add(e.seq);
  const row = eventRow(e);
  const later = [...list.children].find((li) => Number(li.dataset.seq) < e.seq);
  list.insertBefore(row, later || null);
  while (list.children.length > MAX_EVENT_ROWS) list.lastChild.remove();
}

function renderHostActions(row) {
  const box = $('host-actions');
  if (!box) return;
  const key = S.role === 'admin' && row ? row.hostname + ' ' + row.administrative : '';
  // Rebuilt only when it changes, so a keyboard user's focus on the button stays.
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren();
  if (!key) return;
  const name = row.hostname;
  if (row.administrative === 'unlocked') {
    box.append(h('button', { type: 'button', id: 'host-lock', onclick: () => confirmLock(name) }, 'Lock…'));
  } else {
    box.append(h('button', { type: 'button', id: 'host-unlock', onclick: () => confirmUnlock(name) }, 'Unlock…'));
  }
}

function closeHost() {
  const name = S.selected;
  S.selected = null;
  $('host').hidden = true;
  const cell = name && S.cells.get(name);
  if (cell) {
    cell.setAttribute('aria-selected', 'false');
    cell.focus();
  }
}

// ---- the timeline -----------------------------------------------------------------------

function renderTimeline() {
  const st = S.strategy;
  const box = $('timeline');
  if (!st || !st.stages.length) {
    box.replaceChildren();
    $('timeline-summary').textContent = st ? 'The strategy has no stages yet.' : 'No strategy: the timeline shows an automated upgrade.';
    box.dataset.stages = '0';
    box.dataset.done = '0';
    return;
  }
  const ts = S.timeScale;
  // The daemon's clock, not the browser's: the stages' times are the daemon's.
  const now = Date.now() + S.skew;
  const t0 = st.start ? Date.parse(st.start) : now;
  // Lanes: one per kind of stage (and version), batches side by side along time.
  const lanes = [];
  const laneOf = new Map();
  let predAt = 0;
  const bars = st.stages.map((s) => {
    const key = s.name + ' ' + (s.version || '');
    if (!laneOf.has(key)) {
      laneOf.set(key, lanes.length);
      lanes.push((STAGE_LABELS[s.name] || s.name) + (s.version ? ' ' + s.version : ''));
    }
    const pred = { from: predAt, to: predAt + s.predicted_seconds * ts };
    predAt = pred.to;
    const a = s.start ? (Date.parse(s.start) - t0) / 1000 : null;
    const b = s.end ? (Date.parse(s.end) - t0) / 1000 : s.start ? (now - t0) / 1000 : null;
    return { s, lane: laneOf.get(key), pred, actual: a === null ? null : { from: a, to: Math.max(a, b) } };
  });
  const done = st.stages.filter((s) => s.result === 'success').length;
  const ended = st.end ? (Date.parse(st.end) - t0) / 1000 : null;
  const elapsed = st.start ? (ended !== null ? ended : (now - t0) / 1000) : 0;
  const span = Math.max(predAt, elapsed, st.lower_bound_seconds * ts, st.predicted_seconds * ts, ...bars.map((b) => (b.actual ? b.actual.to : 0)), 1);

  const width = Math.max(600, box.clientWidth || 900);
  const left = 170;
  const right = 16;
  const laneH = 26;
  const top = 20;
  const height = top + lanes.length * laneH + 24;
  const x = (sec) => left + ((width - left - right) * sec) / span;
  const root = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, width, height, role: 'img', 'aria-labelledby': 'timeline-title timeline-summary' });
  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 5; i++) {
    const sec = (span * i) / 5;
    axis.append(svg('line', { x1: x(sec), x2: x(sec), y1: top - 4, y2: height - 20 }));
    axis.append(svg('text', { x: x(sec), y: height - 6, 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle' }, human(sec)));
  }
  root.append(axis);
  lanes.forEach((label, i) => root.append(svg('text', { x: 4, y: top + i * laneH + 14 }, label)));
  for (const b of bars) {
    const y = top + b.lane * laneH;
    const name = (STAGE_LABELS[b.s.name] || b.s.name) + (b.s.version ? ' ' + b.s.version : '');
    const who = b.s.host_count ? ' · ' + b.s.host_count + ' host(s): ' + b.s.first_hosts.join(', ') + (b.s.host_count > b.s.first_hosts.length ? ', …' : '') : '';
    // A pixel apart, so that batches side by side read as batches.
    const pr = svg('rect', { class: 'tl-pred', x: x(b.pred.from), y, width: Math.max(1, x(b.pred.to) - x(b.pred.from) - 1), height: 9 });
    pr.append(svg('title', {}, name + ' predicted ' + human(b.s.predicted_seconds * ts) + who));
    root.append(pr);
    if (b.actual) {
      const ar = svg('rect', { class: 'tl-actual', 'data-result': b.s.result, x: x(b.actual.from), y: y + 11, width: Math.max(2, x(b.actual.to) - x(b.actual.from) - 1), height: 9 });
      ar.append(svg('title', {}, name + ' ' + b.s.result + ' in ' + human(b.actual.to - b.actual.from) + who + (b.s.reason ? ' · ' + b.s.reason : '')));
      root.append(ar);
    }
  }
  const mark = (cls, sec, label) => {
    const l = svg('line', { class: 'tl-mark ' + cls, x1: x(sec), x2: x(sec), y1: top - 8, y2: height - 20 });
    l.append(svg('title', {}, label));
    root.append(l);
  };
  mark('lower', st.lower_bound_seconds * ts, 'lower bound ' + human(st.lower_bound_seconds * ts));
  mark('predicted', st.predicted_seconds * ts, 'predicted when built ' + human(st.predicted_seconds * ts));
  if (st.start && ended === null) mark('now', elapsed, 'now');
  box.replaceChildren(root);
  box.dataset.stages = String(st.stages.length);
  box.dataset.done = String(done);
  $('timeline-summary').textContent =
    st.timeline_phase + ': ' + done + ' of ' + st.stages.length + ' stages done · ' +
    (st.start ? (ended !== null ? 'took ' : 'running for ') + human(elapsed) : 'not started') +
    ' · predicted ' + human(st.predicted_seconds * ts) + ' when built, ' + human(predAt) + ' by the stages now' +
    ' · lower bound ' + human(st.lower_bound_seconds * ts) +
    (ts !== 1 ? ' (time scale ' + ts + ')' : '') + '. Grey: predicted; below it, what happened; dashed: lower bound (purple) and prediction when built.';
}

/** While a stage runs, its bar and the elapsed time grow with the clock: redrawn each second
 *  from what the page holds (nothing is read). */
function tick() {
  const running = S.strategy && (S.strategy.state === 'applying' || S.strategy.state === 'aborting');
  if (running && !S.ticker) S.ticker = setInterval(renderTimeline, 1000);
  if (!running && S.ticker) {
    clearInterval(S.ticker);
    S.ticker = 0;
  }
}

// ---- the event log ----------------------------------------------------------------------

function eventRow(e) {
  const at = new Date(e.at);
  return h('li', { class: 'kind-' + e.kind, 'data-seq': e.seq },
    h('span', { text: '#' + e.seq }),
    h('time', { datetime: e.at, title: e.at, text: at.toLocaleTimeString([], { hour12: false }) }),
    h('span', { text: e.kind }),
    h('span', { text: e.subject }),
    h('span', { text: e.message }));
}

function eventShown(e) {
  const kind = $('event-kind').value;
  const text = $('event-text').value.trim().toLowerCase();
  if (kind && e.kind !== kind) return false;
  return !text || e.subject.toLowerCase().includes(text) || e.message.toLowerCase().includes(text);
}

function renderEvents() {
  const rows = [];
  for (let i = S.events.length - 1; i >= 0 && rows.length < MAX_EVENT_ROWS; i--) {
    if (eventShown(S.events[i])) rows.push(eventRow(S.events[i]));
  }
  $('events').replaceChildren(...rows);
}

function prependEvents(events) {
  const list = $('events');
  const shown = events.filter(eventShown);
  for (const e of shown) list.prepend(eventRow(e));
  while (list.children.length > MAX_EVENT_ROWS) list.lastChild.remove();
}

// ---- actions (admin tokens) -------------------------------------------------------------

function renderActions() {
  if (S.role !== 'admin') return;
  const st = S.strategy;
  const running = st && (st.state === 'applying' || st.state === 'aborting' || st.state === 'building');
  const applicable = st && ['ready-to-apply', 'apply-failed', 'apply-timeout', 'aborted'].includes(st.state);
  const upgrading = S.cluster && S.cluster.upgrade_state;
  const buttons = [
    ['action-start', 'Start upgrade…', confirmStart, upgrading || running ? 'An upgrade is already in progress' : null],
    ['action-online', 'Upgrade online (partial OK)…', confirmOnline, running ? 'A strategy is ' + st.state : null],
    ['action-apply', 'Apply strategy…', confirmApply, applicable ? null : 'No strategy ready to apply'],
    ['action-abort', 'Abort strategy…', confirmAbort, st && st.state === 'applying' ? null : 'No strategy is applying'],
  ];
  const box = $('action-buttons');
  if (!box.children.length) {
    box.append(...buttons.map(([id, label, fn]) => h('button', { type: 'button', id, onclick: fn }, label)));
  }
  for (const [id, , , why] of buttons) {
    const b = $(id);
    b.disabled = Boolean(why);
    b.title = why || '';
  }
}

/** The one confirmation dialog: `load` fills its body (and may refuse), `ok` does the
 *  change; the dialog stays open with the daemon's reason when it is refused. */
async function confirmDialog({ title, okLabel, danger, load, ok }) {
  const dlg = $('confirm');
  // A slow answer meant for an earlier opening of the dialog is dropped.
  const opening = ++S.dialogs;
  $('confirm-title').textContent = title;
  const body = $('confirm-body');
  body.replaceChildren(h('p', { text: 'Reading…' }));
  $('confirm-error').textContent = '';
  const okBtn = $('confirm-ok');
  okBtn.textContent = okLabel;
  okBtn.className = danger ? 'danger' : 'primary';
  okBtn.disabled = true;
  okBtn.onclick = async () => {
    if (opening !== S.dialogs) return;
    okBtn.disabled = true;
    $('confirm-error').textContent = '';
    try {
      const done = await ok();
      say(done || 'Done.');
      if (opening === S.dialogs) dlg.close();
    } catch (e) {
      // A dialog opened since is another's: the refusal is said on the page instead.
      if (opening !== S.dialogs) return say('Refused: ' + e.message);
      $('confirm-error').textContent = 'Refused: ' + e.message;
      okBtn.disabled = false;
    }
  };
  $('confirm-cancel').onclick = () => dlg.close();
  if (!dlg.open) dlg.showModal();
  try {
    const nodes = await load(() => opening === S.dialogs);
    if (opening !== S.dialogs) return;
    body.replaceChildren(...nodes);
    okBtn.disabled = false;
  } catch (e) {
    if (opening !== S.dialogs) return;
    body.replaceChildren();
    $('confirm-error').textContent = e.message;
  }
}

async function availableVersions() {
  const list = await api('/v1/kube_versions');
  const versions = list.kube_versions.filter((v) => v.state === 'available').map((v) => v.version);
  if (!versions.length) throw new Error('No version is available to upgrade to (upload and apply its patches first).');
  return versions;
}

function versionSelect(id, versions) {
  return [h('label', { for: id, text: 'Version' }), h('select', { id }, versions.map((v) => h('option', { value: v, text: v })))];
}

function confirmStart() {
  confirmDialog({
    title: 'Start an upgrade',
    okLabel: 'Start the upgrade',
    load: async () => {
      const [versions, health] = await Promise.all([availableVersions(), api('/v1/health/kube-upgrade')]);
      return [
        h('p', { text: 'This creates the upgrade (kube-upgrade-start). Its steps then run one by one: by hand, or with a strategy.' }),
        ...versionSelect('start-version', versions.reverse()),
        h('p', { text: 'Health check now (the start refuses on a failed check):' }),
        h('pre', { id: 'start-health', text: health }),
      ];
    },
    ok: async () => {
      const v = $('start-version').value;
      const u = await api('/v1/kube_upgrade', { method: 'POST', body: { to_version: v, force: false } });
      return 'Upgrade to ' + u.to_version + ' started: ' + u.state + '.';
    },
  });
}

/** `kup upgrade online --partial-ok`, step for step as the CLI does it: the plan first (a
 *  blocked plan is refused unless an upgrade is already under way), then a strategy that is
 *  applying with the same settings is followed, a stopped one with the same settings resumed,
 *  any other replaced; a strategy that fails to build is deleted and its reason shown. */
function confirmOnline() {
  let plans = 0;
  let blocked = true;
  let alive = () => false;
  const loadPlan = async () => {
    if (!alive()) return;
    const asked = ++plans;
    const v = $('online-version').value;
    const n = Math.max(1, Math.min(1000, Number($('online-batch').value) || 1));
    const out = $('online-plan');
    $('confirm-ok').disabled = true;
    out.textContent = 'Planning…';
    try {
      const p = await api('/v1/upgrade/plan?to=' + encodeURIComponent(v) + '&max_parallel_worker_hosts=' + n);
      if (asked !== plans || !alive()) return;
      out.textContent = planText(p);
      blocked = p.blocked.length > 0 && !(S.cluster && S.cluster.upgrade_state);
      $('confirm-ok').disabled = blocked;
    } catch (e) {
      if (asked !== plans || !alive()) return;
      out.textContent = e.message;
    }
  };
  confirmDialog({
    title: 'Upgrade online, partial OK',
    okLabel: 'Create and apply the strategy',
    load: async (isAlive) => {
      alive = isAlive;
      const target = S.cluster && S.cluster.upgrade_state ? S.cluster.target : null;
      const versions = target ? [target] : (await availableVersions()).reverse();
      const sel = versionSelect('online-version', versions);
      sel[1].addEventListener('change', loadPlan);
      const batch = h('input', { id: 'online-batch', type: 'number', min: 1, max: 1000, value: 10 });
      batch.addEventListener('change', loadPlan);
      const nodes = [
        h('p', { text: 'As kup upgrade online --partial-ok: a strategy runs every step in order; workloads are judged before each batch; hosts that are unsafe or not ready are left out and reported, not forced.' }),
        ...sel,
        h('label', { for: 'online-batch', text: 'Most workers at a time' }),
        batch,
        h('pre', { id: 'online-plan', text: '' }),
      ];
      // Once the dialog holds these nodes: the plan decides whether OK is offered.
      setTimeout(loadPlan, 0);
      return nodes;
    },
    ok: async () => {
      if (blocked) throw new Error('the plan is not in yet, or it is blocked');
      const v = $('online-version').value;
      const n = Math.max(1, Math.min(1000, Number($('online-batch').value) || 1));
      const current = await api('/v1/kube_upgrade_strategy').catch((e) => {
        if (e.status === 404) return null;
        throw e;
      });
      if (current) {
        const s = current.strategy;
        const same = s.to_version === v && s.mode === 'online' && s.partial_ok;
        if (['applying', 'aborting'].includes(s.state)) {
          if (same) return 'A strategy to ' + v + ' is already ' + s.state + '.';
          throw new Error('a strategy to ' + s.to_version + ' (' + s.mode + ') is ' + s.state + ': wait for it or abort it');
        }
        if (same && s.max_parallel_worker_hosts === n && ['apply-failed', 'apply-timeout', 'aborted'].includes(s.state)) {
          await api('/v1/kube_upgrade_strategy/actions', { method: 'POST', body: { action: 'apply-all' } });
          return 'Resuming the strategy to ' + v + '.';
        }
        await api('/v1/kube_upgrade_strategy', { method: 'DELETE' });
      }
      const built = await api('/v1/kube_upgrade_strategy', {
        method: 'POST',
        body: { to_version: v, worker_apply_type: 'parallel', max_parallel_worker_hosts: n, alarm_restrictions: 'strict', mode: 'online', partial_ok: true },
      });
      if (built.strategy.state !== 'ready-to-apply') {
        await api('/v1/kube_upgrade_strategy', { method: 'DELETE' }).catch(() => null);
        throw new Error('the strategy was not built (' + built.strategy.state + '): ' + built.strategy.build_phase.reason);
      }
      await api('/v1/kube_upgrade_strategy/actions', { method: 'POST', body: { action: 'apply-all' } });
      return 'Upgrading online to ' + v + ': the strategy is applying.';
    },
  });
}

function planText(p) {
  if (p.blocked.length) return 'Cannot upgrade to ' + p.to + ': ' + p.blocked.join('; ');
  const batches = p.stages.reduce((n, s) => n + s.batches.length, 0);
  const unsafe = p.hosts.filter((x) => x.verdict === 'UNSAFE').map((x) => x.host);
  const unready = p.readiness.filter((r) => !r.ready).map((r) => r.host);
  const lines = [
    'Upgrade ' + (p.from || '?') + ' → ' + p.to + ': ' + p.stages.length + ' stages, ' + batches + ' batches.',
    'Predicted ' + human(p.total_seconds * S.timeScale) + ', lower bound ' + human(p.lower_bound_seconds * S.timeScale) + '.',
  ];
  if (unsafe.length) lines.push('Unsafe alone (' + unsafe.length + '): ' + unsafe.slice(0, 10).join(', ') + (unsafe.length > 10 ? ', …' : ''));
  if (unready.length) lines.push('Not ready (' + unready.length + '): ' + unready.slice(0, 10).join(', ') + (unready.length > 10 ? ', …' : ''));
  return lines.join('\n');
}

function confirmApply() {
  const st = S.strategy;
  confirmDialog({
    title: 'Apply the strategy',
    okLabel: 'Apply',
    load: async () => [
      h('p', { text: 'Applies the strategy to ' + st.to_version + ' (' + st.mode + '): every remaining step runs in order, from where the upgrade stands, until it is done or a step fails.' }),
    ],
    ok: async () => {
      await api('/v1/kube_upgrade_strategy/actions', { method: 'POST', body: { action: 'apply-all' } });
      return 'The strategy is applying.';
    },
  });
}

function confirmAbort() {
  confirmDialog({
    title: 'Abort the strategy',
    okLabel: 'Abort',
    danger: true,
    load: async () => [h('p', { text: 'The steps in flight end; no new step starts. The hosts stay as they are; the strategy can be applied again later.' })],
    ok: async () => {
      await api('/v1/kube_upgrade_strategy/actions', { method: 'POST', body: { action: 'abort' } });
      return 'The strategy is aborting.';
    },
  });
}

function hostAction(name, action) {
  return api('/v1/ihosts/' + encodeURIComponent(name), { method: 'PATCH', body: [{ op: 'replace', path: '/action', value: action }] });
}

function confirmLock(name) {
  confirmDialog({
    title: 'Lock ' + name,
    okLabel: 'Lock',
    danger: true,
    load: async () => {
      const f = await api('/v1/ihosts/' + encodeURIComponent(name) + '/findings');
      return [
        h('p', { text: 'Locking drains its pods (evictions that respect PodDisruptionBudgets) and takes it out of service. A lock the analysis finds unsafe is refused.' }),
        findingsView(f),
      ];
    },
    ok: async () => {
      await hostAction(name, 'lock');
      return name + ' is locking.';
    },
  });
}

function confirmUnlock(name) {
  confirmDialog({
    title: 'Unlock ' + name,
    okLabel: 'Unlock',
    load: async () => [h('p', { text: 'Unlocking puts ' + name + ' back in service and lets pods be scheduled on it again.' })],
    ok: async () => {
      await hostAction(name, 'unlock');
      return name + ' is unlocking.';
    },
  });
}

// ---- wiring -----------------------------------------------------------------------------

function init() {
  // Anything the Content-Security-Policy stops is counted where a test (or a person in the
  // browser's tools) can see it: the page itself must never need an exception.
  document.addEventListener('securitypolicyviolation', (e) => {
    const n = Number(document.documentElement.dataset.cspViolations || 0) + 1;
    document.documentElement.dataset.cspViolations = String(n);
    console.error('Content-Security-Policy stopped', e.violatedDirective, e.blockedURI);
  });
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    $('login-error').textContent = '';
    $('login-submit').disabled = true;
    try {
      await signIn(token);
    } catch (err) {
      S.token = null;
      $('login-error').textContent = err.status === 401 ? 'The token was refused.' : err.message;
    } finally {
      $('login-submit').disabled = false;
    }
  });
  $('logout').addEventListener('click', () => signOut(''));
  // However it closes (OK, Cancel, Escape), answers meant for this opening are dropped.
  $('confirm').addEventListener('close', () => S.dialogs++);
  $('host-close').addEventListener('click', closeHost);
  $('host').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeHost();
  });
  const grid = $('grid');
  grid.addEventListener('keydown', onGridKey);
  grid.addEventListener('click', (e) => {
    const cell = e.target.closest('.cell');
    if (!cell) return;
    const i = Number(cell.dataset.i);
    moveFocus(i);
    selectHost(S.order[i]);
  });
  $('event-kind').addEventListener('change', renderEvents);
  $('event-text').addEventListener('input', renderEvents);
  window.addEventListener('resize', () => S.strategy && renderTimeline());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    signIn(saved).catch((e) => {
      if (e.status === 401) return signOut('The saved token was refused.');
      // The daemon did not answer: the token is kept, and signing in again retries.
      $('login').hidden = false;
      $('login-error').textContent = 'Cannot reach the daemon (' + e.message + '): sign in to try again.';
    });
  } else {
    $('login').hidden = false;
    $('token').focus();
  }
}

document.addEventListener('DOMContentLoaded', init);
