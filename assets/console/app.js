// The Logbook console: one page over the public /v1 API, signed in with a user token or a server
// key. No framework: a small DOM builder, a hash router (the URL holds tab, filters, range and open
// detail) and one live stream. Everything it shows is what the API answers, so it is scriptable too.
'use strict';

// ---------------------------------------------------------------------------------------------
// DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** h('tag.class', {attr, onclick}, ...children): text children become text nodes, never HTML. */
function h(spec, attrs, ...children) {
  const [head, ...classes] = spec.split('.');
  const [tag, id] = head.split('#');
  const el = document.createElement(tag || 'div');
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(' ');
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className += (el.className ? ' ' : '') + value;
    else if (key === 'value') el.value = value;
    else if (key === 'checked' || key === 'selected' || key === 'disabled') el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces `el`'s children (skipping null and false, unlike replaceChildren); nothing if no `el`. */
function fill(el, ...children) {
  if (!el) return;
  el.replaceChildren();
  append(el, children);
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  return el;
}

function announce(text) {
  $('#announce').textContent = text;
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details || [];
  }
}

const session = {
  get token() { return sessionStorage.getItem('logbook.token'); },
  set token(value) { value ? sessionStorage.setItem('logbook.token', value) : sessionStorage.removeItem('logbook.token'); },
  project: null,
};

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (response.status === 401) signOut('Your session ended: sign in again.');
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const get = (path) => api('GET', path);
const post = (path, body) => api('POST', path, body ?? {});

function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of [].concat(value)) if (v !== undefined && v !== null && v !== '') search.append(key, v);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Downloads a file the API serves, with the session's token (a plain link could not send it). */
async function download(path, fallbackName) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  const disposition = response.headers.get('content-disposition') || '';
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = h('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------------------------------------
// Routing: #/<tab>?<params>. Filters use the API's own parameter names; `open` names the resource
// shown in the detail panel (its kind follows from its id's prefix).

const TABS = ['logs', 'tasks', 'exports', 'sendouts', 'webhooks'];

function route() {
  const [path, search] = location.hash.replace(/^#\/?/, '').split('?');
  const tab = TABS.includes(path) ? path : 'logs';
  return { tab, params: new URLSearchParams(search || '') };
}

function href(tab, params) {
  const text = params.toString();
  return `#/${tab}${text ? `?${text}` : ''}`;
}

function navigate(tab, params, { replace = false } = {}) {
  const target = href(tab, params);
  if (target === location.hash) return render();
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  render();
}

/** The current route with `changes` applied (a null value removes the parameter). */
function withParams(changes, base = route().params) {
  const params = new URLSearchParams(base);
  for (const [key, value] of Object.entries(changes)) {
    params.delete(key);
    for (const v of [].concat(value ?? [])) if (v !== '') params.append(key, v);
  }
  return params;
}

function openHref(id) {
  const { tab, params } = route();
  return href(tab, withParams({ open: id }, params));
}

function detailLink(id, label) {
  if (!id) return '—';
  return h('a.id', { href: openHref(id), title: `Open ${id}` }, label || id);
}

// ---------------------------------------------------------------------------------------------
// Formatting

const timeModes = { project: 'Project time', local: 'Local time', utc: 'UTC' };
let timeMode = localStorage.getItem('logbook.time') || 'project';

/** A resource time in the chosen mode, from its `X_at` and `X_at_project` fields. */
function when(utc, project) {
  if (!utc) return '—';
  if (timeMode === 'utc') return utc.replace('T', ' ').replace('Z', ' UTC');
  if (timeMode === 'local') {
    const d = new Date(utc);
    return `${d.toLocaleDateString(undefined, { year: 'numeric', month: '2-digit', day: '2-digit' })} ${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  }
  return (project || utc).replace('T', ' ');
}

function timeCell(utc, project) {
  return h('time', { datetime: utc || '' }, when(utc, project));
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function badge(value) {
  return h(`span.badge.b-${String(value || 'none').replace(/[^a-z_]/g, '')}`, value ?? '—');
}

function actor(createdBy) {
  if (!createdBy) return '—';
  return createdBy.id ? `${createdBy.kind} ${createdBy.id}` : createdBy.kind;
}

// ---------------------------------------------------------------------------------------------
// JSON viewer: collapsible, copyable, pretty-printed.

function jsonView(value, { label = 'JSON', open = 2 } = {}) {
  const copy = h('button.ghost.small', { type: 'button', onclick: () => copyText(typeof value === 'string' ? value : JSON.stringify(value, null, 2), label) }, 'Copy');
  return h('div.json', h('div.json-tools', copy), h('div.json-tree', node(value, open)));
}

function node(value, open, key) {
  const keyEl = key !== undefined ? h('span.k', `${JSON.stringify(key)}: `) : null;
  if (value === null || typeof value !== 'object') {
    const cls = value === null ? 'n' : typeof value === 'string' ? 's' : typeof value === 'number' ? 'num' : 'b';
    return h('div.leaf', keyEl, h(`span.${cls}`, JSON.stringify(value)));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [undefined, v, i]) : Object.entries(value).map(([k, v]) => [k, v]);
  const [openMark, closeMark] = Array.isArray(value) ? ['[', ']'] : ['{', '}'];
  if (!entries.length) return h('div.leaf', keyEl, `${openMark}${closeMark}`);
  const details = h('details', { open: open > 0 },
    h('summary', keyEl, openMark, h('span.count', ` ${entries.length} ${Array.isArray(value) ? 'items' : 'keys'} `)),
    h('div.children', entries.map(([k, v]) => node(v, open - 1, k))),
    h('div', closeMark));
  return details;
}

async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    announce(`${what} copied`);
    toast(`${what} copied to the clipboard`);
  } catch {
    showModal(`Copy ${what}`, h('textarea.copy', { readonly: true, rows: 12, 'aria-label': what }, text));
  }
}

function toast(text, kind = 'ok') {
  const el = h(`div.toast.t-${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), 3500);
}

// ---------------------------------------------------------------------------------------------
// Dialogs and the detail drawer

function showModal(title, ...content) {
  const modal = $('#modal');
  $('#modal-title').textContent = title;
  const body = $('#modal-body');
  fill(body);
  append(body, content);
  if (!modal.open) modal.showModal();
  return modal;
}

function closeModal() {
  const modal = $('#modal');
  if (modal.open) modal.close();
}

let drawerFor = null;

function openDrawer(title, content) {
  // A detail that finishes loading after the drawer was closed stays closed.
  if (!route().params.get('open')) return;
  const drawer = $('#drawer');
  $('#drawer-title').textContent = title;
  const body = $('#drawer-body');
  fill(body);
  append(body, [content]);
  const wasHidden = drawer.hidden;
  drawer.hidden = false;
  document.body.classList.add('with-drawer');
  // The title, not the close button: the key that opened the drawer must not also close it.
  if (wasHidden) $('#drawer-title').focus();
}

function closeDrawer() {
  if (route().params.has('open')) navigate(route().tab, withParams({ open: null }));
}

function hideDrawer() {
  $('#drawer').hidden = true;
  drawerFor = null;
  document.body.classList.remove('with-drawer');
}

function errorBox(error) {
  return h('div.error', { role: 'alert' }, error instanceof ApiError ? error.message : `Something went wrong: ${error.message || error}`);
}

function emptyRow(columns, text) {
  return h('tr.empty', h('td', { colspan: columns }, text));
}

// ---------------------------------------------------------------------------------------------
// Tables with keyboard selection (j / k, Enter)

function table(columns, rows, { empty = 'Nothing matches these filters.', openId } = {}) {
  const body = h('tbody');
  if (!rows.length) body.append(emptyRow(columns.length, empty));
  for (const row of rows) {
    const tr = h('tr', { tabindex: -1, 'data-id': openId ? openId(row) : '' }, columns.map((c) => h('td', { class: c.cls }, c.cell(row))));
    if (openId) {
      tr.addEventListener('click', (event) => {
        if (event.target.closest('a,button,input')) return;
        location.hash = openHref(openId(row));
      });
    }
    body.append(tr);
  }
  return h('div.table-wrap', h('table', h('thead', h('tr', columns.map((c) => h('th', { scope: 'col', class: c.cls }, c.title)))), body));
}

function moveSelection(step) {
  const rows = $$('#main tbody tr[data-id]:not([data-id=""])');
  if (!rows.length) return;
  const current = rows.findIndex((r) => r.classList.contains('selected'));
  const next = Math.max(0, Math.min(rows.length - 1, current + step));
  rows.forEach((r) => r.classList.remove('selected'));
  rows[next].classList.add('selected');
  rows[next].setAttribute('aria-selected', 'true');
  rows[next].focus();
}

function openSelection() {
  const row = $('#main tbody tr.selected');
  if (row?.dataset.id) location.hash = openHref(row.dataset.id);
}

// ---------------------------------------------------------------------------------------------
// Time ranges: presets relative to now, or a custom window (the API reads local date-times in the
// project's zone, so a custom range is what the user typed).

const PRESETS = [['15m', 15 * 60e3, 'Last 15 minutes'], ['1h', 3600e3, 'Last hour'], ['24h', 86400e3, 'Last 24 hours'],
  ['7d', 7 * 86400e3, 'Last 7 days'], ['30d', 30 * 86400e3, 'Last 30 days']];

/** The range parameters for the API (`<prefix>_after`, `<prefix>_before`) from the route. */
function rangeParams(params, prefix, fallback = '24h') {
  const after = params.get(`${prefix}_after`);
  const before = params.get(`${prefix}_before`);
  if (after || before) return { [`${prefix}_after`]: after, [`${prefix}_before`]: before };
  const preset = PRESETS.find(([name]) => name === (params.get('range') || fallback)) || PRESETS[2];
  return { [`${prefix}_after`]: new Date(Date.now() - preset[1]).toISOString() };
}

function rangePicker(params, prefix, onChange, fallback = '24h') {
  const custom = params.has(`${prefix}_after`) || params.has(`${prefix}_before`);
  const current = custom ? 'custom' : params.get('range') || fallback;
  const select = h('select', { id: `${prefix}-range`, 'aria-label': 'Time range' },
    PRESETS.map(([name, , label]) => h('option', { value: name, selected: current === name }, label)),
    h('option', { value: 'custom', selected: current === 'custom' }, 'Custom range…'));
  const toLocal = (v) => (v ? v.replace(/Z$|[+-]\d\d:\d\d$/, '').slice(0, 16) : '');
  const from = h('input', { type: 'datetime-local', 'aria-label': 'From (project time)', value: toLocal(params.get(`${prefix}_after`)) });
  const to = h('input', { type: 'datetime-local', 'aria-label': 'To (project time)', value: toLocal(params.get(`${prefix}_before`)) });
  const customBox = h('span.custom-range', { hidden: current !== 'custom' }, from, '–', to,
    h('button.small', { type: 'button', onclick: () => onChange({ range: null, [`${prefix}_after`]: from.value || null, [`${prefix}_before`]: to.value || null }) }, 'Set'));
  select.addEventListener('change', () => {
    if (select.value === 'custom') { customBox.hidden = false; from.focus(); return; }
    onChange({ range: select.value, [`${prefix}_after`]: null, [`${prefix}_before`]: null });
  });
  return h('span.range', select, customBox);
}

// ---------------------------------------------------------------------------------------------
// Histogram: stacked bars per bucket; drag across it to zoom the range.

function histogram(data, series, { onZoom, label }) {
  const buckets = data.buckets;
  const width = 1000;
  const height = 120;
  const max = Math.max(1, ...buckets.map((b) => series.reduce((sum, s) => sum + b[s.key], 0)));
  const barWidth = width / Math.max(1, buckets.length);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height + 18}`, class: 'histogram', role: 'img', preserveAspectRatio: 'none' });
  const total = buckets.reduce((sum, b) => sum + series.reduce((s2, s) => s2 + b[s.key], 0), 0);
  chart.setAttribute('aria-label', `${label}: ${total} in ${buckets.length} buckets of ${data.interval}`);
  buckets.forEach((b, i) => {
    let y = height;
    for (const s of series) {
      const h2 = (b[s.key] / max) * (height - 4);
      if (h2 > 0) {
        const rect = svg('rect', { x: i * barWidth + 0.5, y: y - h2, width: Math.max(1, barWidth - 1), height: h2, class: s.cls });
        const title = svg('title');
        title.textContent = `${when(b.start, b.start_project)}: ${series.map((x) => `${b[x.key]} ${x.label}`).join(', ')}`;
        rect.append(title);
        chart.append(rect);
        y -= h2;
      }
    }
  });
  for (const i of [0, Math.floor(buckets.length / 2), buckets.length - 1]) {
    if (!buckets[i]) continue;
    const text = svg('text', { x: Math.min(width - 4, Math.max(4, i * barWidth)), y: height + 14, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === buckets.length - 1 ? 'end' : 'middle' });
    text.textContent = when(buckets[i].start, buckets[i].start_project).slice(0, 16);
    chart.append(text);
  }
  const selection = svg('rect', { x: 0, y: 0, width: 0, height, class: 'zoom' });
  chart.append(selection);
  let startX = null;
  const bucketAt = (event) => {
    const box = chart.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * width;
    return Math.max(0, Math.min(buckets.length - 1, Math.floor(x / barWidth)));
  };
  chart.addEventListener('pointerdown', (event) => { startX = bucketAt(event); chart.setPointerCapture(event.pointerId); });
  chart.addEventListener('pointermove', (event) => {
    if (startX === null) return;
    const end = bucketAt(event);
    const [a, b] = [Math.min(startX, end), Math.max(startX, end)];
    selection.setAttribute('x', a * barWidth);
    selection.setAttribute('width', (b - a + 1) * barWidth);
  });
  chart.addEventListener('pointerup', (event) => {
    if (startX === null) return;
    const end = bucketAt(event);
    const [a, b] = [Math.min(startX, end), Math.max(startX, end)];
    startX = null;
    if (a === b && buckets.length > 1 && event.type === 'pointerup' && selection.getAttribute('width') === '0') return;
    const after = buckets[a].start;
    const before = buckets[b + 1]?.start || new Date(new Date(buckets[b].start).getTime() + (new Date(buckets[1]?.start || 0) - new Date(buckets[0].start) || 60e3)).toISOString();
    onZoom(after, before);
  });
  const legend = h('div.legend', series.map((s) => h('span', h(`i.swatch.${s.cls}`), ` ${s.label}`)), h('span.muted', ` · ${data.interval} buckets · drag to zoom`));
  return h('figure.chart', chart, h('figcaption', legend));
}

// ---------------------------------------------------------------------------------------------
// The live stream: one connection, read with fetch (EventSource cannot send the token), resumed
// from the last id after a drop so that no change is lost.

const live = {
  lastId: null,
  controller: null,
  listeners: new Set(),
  retryMs: 2000,

  start() {
    if (this.controller) return;
    this.controller = new AbortController();
    this.run(this.controller.signal);
  },

  stop() {
    this.controller?.abort();
    this.controller = null;
    this.lastId = null;
    this.show('');
  },

  show(text, ok) {
    const el = $('#live');
    el.hidden = !text;
    el.textContent = text;
    el.classList.toggle('ok', Boolean(ok));
  },

  async run(signal) {
    while (!signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' };
        if (this.lastId) headers['Last-Event-ID'] = this.lastId;
        const response = await fetch('/v1/stream', { headers, signal });
        if (!response.ok) throw new Error(`stream answered ${response.status}`);
        this.show('● Live', true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            this.frame(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
      }
      this.show('○ Reconnecting…');
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  },

  frame(text) {
    let id = null;
    let event = 'message';
    const data = [];
    for (const line of text.split('\n')) {
      if (line.startsWith(':')) continue;
      const [field, ...rest] = line.split(':');
      const value = rest.join(':').replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry') this.retryMs = Number(value) || this.retryMs;
    }
    if (id) this.lastId = id;
    if (event === 'resume' || !data.length) return;
    let payload;
    try { payload = JSON.parse(data.join('\n')); } catch { return; }
    for (const listener of this.listeners) listener(event, payload);
  },
};

/** Calls `fn` at most once per `ms`, the last call winning. */
function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

// ---------------------------------------------------------------------------------------------
// Views. Each view renders into #main from the route and registers what it does with live changes.

let view = { tab: null, onLive: null };

live.listeners.add((event, payload) => {
  view.onLive?.(event, payload);
  drawerLive?.(event, payload);
});

let drawerLive = null;

function toolbar(...children) {
  return h('div.toolbar', children);
}

function pager(page, params, tab) {
  const cursors = params.getAll('cursor');
  const back = cursors.length ? h('a.button', { href: href(tab, withParams({ cursor: cursors.slice(0, -1), open: null }, params)) }, '← Newer') : null;
  const next = page.next_cursor ? h('a.button', { href: href(tab, withParams({ cursor: [...cursors, page.next_cursor], open: null }, params)) }, 'Older →') : null;
  return h('div.pager', back, next, h('span.muted', `${page.data.length} shown${page.has_more ? ', more follow' : ''}`));
}

/** The API filter parameters held in the route: every parameter but the console's own. */
const UI_PARAMS = ['range', 'open', 'cursor', 'browse', 'q', 'live', 'tz'];

function apiFilters(params) {
  const out = {};
  for (const [key, value] of params) {
    if (UI_PARAMS.includes(key) || key.startsWith('filter.')) continue;
    (out[key] ||= []).push(value);
  }
  return out;
}

function lastCursor(params) {
  const all = params.getAll('cursor');
  return all[all.length - 1];
}

// ---- Logs -------------------------------------------------------------------------------------

const LOG_ATTRIBUTES = [
  ['status', 'Status', 'facet'], ['channel', 'Channel', 'facet'], ['endpoint', 'Endpoint', 'facet'],
  ['user_id', 'User ID', 'facet'], ['customer_id', 'Customer ID', 'facet'], ['server_key_id', 'Server-side key', 'facet'],
  ['client_key_id', 'Client-side key', 'facet'], ['request_body_contains', 'Request body contains', 'text'],
  ['response_body_contains', 'Response body contains', 'text'], ['related_id', 'Related resource ID', 'text'],
];
/** Per resource, the columns an export may hold, as the server defines them (fetched once). */
let exportFields = null;
async function exportFieldsOf(resource) {
  exportFields ??= get('/v1/exports/fields').catch((error) => { exportFields = null; throw error; });
  return (await exportFields).data.find((f) => f.resource === resource);
}

function filterBuilder(attributes, params, { onApply, facets }) {
  const pending = [];
  const attr = h('select', { id: 'filter-attr', 'aria-label': 'Filter attribute' }, attributes.map(([name, label]) => h('option', { value: name }, label)));
  const listId = 'filter-values';
  const options = h('datalist', { id: listId });
  const value = h('input', { id: 'filter-value', type: 'text', list: listId, 'aria-label': 'Filter value', placeholder: 'Value', autocomplete: 'off' });
  const pendingBox = h('span.chips.pending', { role: 'group', 'aria-label': 'Filters to apply' });
  const suggest = async () => {
    const kind = attributes.find(([n]) => n === attr.value)?.[2];
    fill(options);
    if (kind !== 'facet' || !facets) return;
    try {
      const values = await facets(attr.value);
      const typed = value.value.toLowerCase();
      for (const v of values) if (!typed || v.value.toLowerCase().includes(typed)) options.append(h('option', { value: v.value }, `${v.value} (${v.count})`));
    } catch { /* suggestions are optional */ }
  };
  const suggestSoon = throttle(suggest, 250);
  attr.addEventListener('change', () => { value.value = ''; suggest(); });
  value.addEventListener('focus', suggest);
  value.addEventListener('input', suggestSoon);
  const add = () => {
    if (!value.value.trim()) { value.focus(); return; }
    pending.push([attr.value, value.value.trim()]);
    pendingBox.append(h('span.chip', `${attributes.find(([n]) => n === attr.value)[1]} = ${value.value.trim()}`));
    value.value = '';
    value.focus();
  };
  value.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') { event.preventDefault(); if (value.value.trim()) add(); apply(); }
  });
  const apply = () => {
    if (value.value.trim()) add();
    if (!pending.length) return;
    const next = new URLSearchParams(params);
    for (const [k, v] of pending) next.append(k, v);
    next.delete('cursor');
    onApply(next);
  };
  return h('div.builder', h('label.sr-only', { for: 'filter-attr' }, 'Attribute'), attr, value, options,
    h('button.small', { type: 'button', id: 'filter-add', onclick: add, 'aria-label': 'Add filter', title: 'Add this filter' }, '+'),
    pendingBox,
    h('button.primary.small', { type: 'button', id: 'filter-apply', onclick: apply }, 'Apply'));
}

function activeChips(attributes, params, tab) {
  const chips = [];
  for (const [name, label] of attributes) {
    for (const v of params.getAll(name)) {
      const rest = new URLSearchParams(params);
      const kept = rest.getAll(name).filter((x) => x !== v);
      rest.delete(name);
      kept.forEach((x) => rest.append(name, x));
      rest.delete('cursor');
      chips.push(h('span.chip', { 'data-filter': name }, `${label} = ${v} `, h('a.remove', { href: href(tab, rest), 'aria-label': `Remove filter ${label} = ${v}` }, '×')));
    }
  }
  return chips.length ? h('div.chips', { role: 'group', 'aria-label': 'Active filters' }, chips) : null;
}

async function logsView(main, params) {
  const range = rangeParams(params, 'occurred');
  const filters = { ...apiFilters(params), ...range };
  const errorsOnly = params.getAll('status').length === 1 && params.get('status') === 'failure';
  const go = (changes) => navigate('logs', withParams({ ...changes, cursor: null }, params));
  const switcher = h('div.segmented', { role: 'group', 'aria-label': 'Which logs' },
    h('button', { type: 'button', 'aria-pressed': String(!errorsOnly), onclick: () => go({ status: null }) }, 'All logs'),
    h('button', { type: 'button', id: 'errors-only', 'aria-pressed': String(errorsOnly), onclick: () => go({ status: 'failure' }) }, 'Errors only'));
  const tailOn = params.get('live') === '1';
  const tail = h('label.switch', h('input', { type: 'checkbox', id: 'live-tail', checked: tailOn, onchange: (e) => go({ live: e.target.checked ? '1' : null }) }), ' Live tail');
  const tz = h('select', { id: 'time-mode', 'aria-label': 'Show times in', onchange: (e) => { timeMode = e.target.value; localStorage.setItem('logbook.time', timeMode); render(); } },
    Object.entries(timeModes).map(([k, label]) => h('option', { value: k, selected: k === timeMode }, label)));
  const facets = async (field) => (await get(`/v1/logs/facets${qs({ ...filters, field })}`)).values;
  const endpointsSuggest = async (field) => {
    if (field !== 'endpoint') return facets(field);
    const [top, all] = await Promise.all([facets(field), get('/v1/logs/endpoints')]);
    const seen = new Set(top.map((v) => v.value));
    return [...top, ...all.filter((e) => !seen.has(e)).map((value) => ({ value, count: 0 }))];
  };
  const exportButton = h('button', { type: 'button', id: 'export-logs', onclick: () => exportDialog('logs', filters) }, 'Export…');
  fill(main,
    h('div.view-head', h('h1', 'Logs'), switcher, rangePicker(params, 'occurred', go), tz, tail, exportButton),
    filterBuilder(LOG_ATTRIBUTES, params, { onApply: (next) => navigate('logs', next), facets: endpointsSuggest }),
    activeChips(LOG_ATTRIBUTES, params, 'logs'),
    h('div#chart.chart-slot', h('p.muted', 'Loading the histogram…')),
    h('div#list', h('p.muted', 'Loading logs…')),
  );
  const columns = [
    { title: 'Log ID', cell: (l) => detailLink(l.id) },
    { title: 'Time', cell: (l) => timeCell(l.occurred_at, l.occurred_at_project) },
    { title: 'Channel', cell: (l) => l.channel },
    { title: 'Status', cell: (l) => badge(l.status) },
    { title: 'Endpoint', cell: (l) => h('code', l.endpoint) },
    { title: 'HTTP', cls: 'num', cell: (l) => String(l.http_status) },
    { title: 'Duration', cls: 'num', cell: (l) => duration(l.duration_ms) },
  ];
  const drawList = async () => {
    try {
      const page = await get(`/v1/logs${qs({ ...filters, cursor: lastCursor(params) })}`);
      fill($('#list', main), table(columns, page.data, { openId: (l) => l.id }), pager(page, params, 'logs'));
    } catch (error) { fill($('#list', main), errorBox(error)); }
  };
  const drawChart = async () => {
    try {
      const data = await get(`/v1/logs/histogram${qs(filters)}`);
      fill($('#chart', main), histogram(data, [{ key: 'success', cls: 'ok', label: 'success' }, { key: 'failure', cls: 'bad', label: 'failure' }],
        { label: 'Logs over time', onZoom: (after, before) => go({ range: null, occurred_after: after, occurred_before: before }) }));
    } catch (error) { fill($('#chart', main), errorBox(error)); }
  };
  await Promise.all([drawList(), drawChart()]);
  if (tailOn && !params.has('cursor') && !params.has('occurred_before')) {
    const refresh = throttle(async () => {
      // Presets are relative to now: recompute the window so new logs fall inside it.
      Object.assign(filters, rangeParams(params, 'occurred'));
      await Promise.all([drawList(), drawChart()]);
    }, 1000);
    view.onLive = (event) => { if (event === 'log.recorded') refresh(); };
  }
}

async function exportDialog(resource, filters) {
  let fields;
  try { fields = await exportFieldsOf(resource); } catch (error) { toast(error.message, 'error'); return; }
  if (!fields) { toast(`This server does not export ${resource}.`, 'error'); return; }
  const boxes = fields.fields.map((name) =>
    h('label.check', h('input', { type: 'checkbox', name: 'field', value: name, checked: fields.default_fields.includes(name) }), ` ${name}`));
  const shown = Object.entries(filters).map(([k, v]) => h('li', h('code', k), ' = ', [].concat(v).join(', ')));
  const status = h('div');
  const form = h('form.export-form', {
    onsubmit: async (event) => {
      event.preventDefault();
      const chosen = $$('input[name=field]:checked', form).map((b) => b.value);
      const body = { resource, filters: Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, Array.isArray(v) && v.length === 1 ? v[0] : v])), fields: chosen, format: 'csv' };
      try {
        const created = await post('/v1/exports', body);
        closeModal();
        toast(`Export ${created.id} scheduled`);
        navigate('exports', new URLSearchParams({ open: created.id }));
      } catch (error) { fill(status, errorBox(error)); }
    },
  },
  h('p', 'Rows matching these filters:'), h('ul.filters', shown),
  h('fieldset', h('legend', 'Fields'), h('div.checks', boxes)),
  status,
  h('div.actions', h('button.primary', { type: 'submit', id: 'export-submit' }, 'Export CSV')));
  showModal(`Export ${resource}`, form);
}

// ---- Log detail and the chain of what it caused ----------------------------------------------

function curlOf(log) {
  const ours = ['api', 'client', 'dashboard', 'admin', 'anonymous'].includes(log.channel);
  const base = ours ? location.origin : 'https://YOUR-API-HOST';
  const query = Object.entries(log.query || {}).flatMap(([k, v]) => [].concat(v).map((x) => `${encodeURIComponent(k)}=${encodeURIComponent(x)}`)).join('&');
  const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
  const parts = [`curl -X ${log.method} ${quote(`${base}${log.path}${query ? `?${query}` : ''}`)}`];
  for (const [k, v] of Object.entries(log.request_headers || {})) {
    if (['host', 'content-length', 'connection'].includes(k.toLowerCase())) continue;
    parts.push(`-H ${quote(`${k}: ${v}`)}`);
  }
  if (log.request_body !== null && log.request_body !== undefined) {
    parts.push(`--data-raw ${quote(typeof log.request_body === 'string' ? log.request_body : JSON.stringify(log.request_body))}`);
  }
  return parts.join(' \\\n  ');
}

function fields(pairs) {
  return h('dl.fields', pairs.filter(Boolean).map(([k, v]) => [h('dt', k), h('dd', v ?? '—')]));
}

function section(title, ...content) {
  return h('section.block', h('h3', title), content);
}

async function logDetail(id) {
  const log = await get(`/v1/logs/${encodeURIComponent(id)}`);
  const who = [
    log.user ? ['User', h('span', `${log.user.name} <${log.user.email}> `, h('code', log.user.id))] : log.user_id ? ['User', h('code', log.user_id)] : null,
    ['Customer', log.customer_id ? h('code', log.customer_id) : '—'],
    log.server_key ? ['Server-side key', h('span', `${log.server_key.name} `, h('code', log.server_key.id))] : log.server_key_id ? ['Server-side key', h('code', log.server_key_id)] : null,
    log.client_key ? ['Client-side key', h('span', `${log.client_key.name} `, h('code', log.client_key.id))] : log.client_key_id ? ['Client-side key', h('code', log.client_key_id)] : null,
  ];
  const chain = h('div#chain', h('p.muted', 'Looking up what this request caused…'));
  const body = (value, truncated, label) => [
    value === null ? h('p.muted', 'Empty') : jsonView(value, { label }),
    truncated ? h('p.muted', 'Truncated: the body was longer than the server keeps.') : null,
  ];
  const content = h('div',
    h('div.detail-actions', h('button', { type: 'button', id: 'copy-curl', onclick: () => copyText(curlOf(log), 'cURL command') }, 'Copy as cURL')),
    fields([
      ['Log ID', h('code', log.id)], ['Time', timeCell(log.occurred_at, log.occurred_at_project)], ['Channel', log.channel],
      ['Status', badge(log.status)], ['Request', h('code', `${log.method} ${log.path}`)], ['Endpoint', h('code', log.endpoint)],
      ['HTTP status', String(log.http_status)], ['Duration', duration(log.duration_ms)],
    ]),
    section('Who', fields(who)),
    section('What it caused', chain),
    section('Query', jsonView(log.query, { label: 'Query', open: 1 })),
    section('Request headers', jsonView(log.request_headers, { label: 'Headers', open: 1 })),
    section('Request body', body(log.request_body, log.request_body_truncated, 'Request body')),
    section('Response body', body(log.response_body, log.response_body_truncated, 'Response body')),
  );
  openDrawer(`Log ${log.id}`, content);
  drawChain(log, chain);
}

/** The resources a request caused, found both ways: the log's `related`, and every resource whose
 * `request_id` is this log. Each links to its own detail, which links back. */
async function drawChain(log, box) {
  const q = qs({ request_id: log.id, limit: 100 });
  const [tasks, events, sendouts] = await Promise.all([
    get(`/v1/tasks${q}`).catch(() => ({ data: [] })),
    get(`/v1/events${q}`).catch(() => ({ data: [] })),
    get(`/v1/webhook-sendouts${q}`).catch(() => ({ data: [] })),
  ]);
  const imports = log.related.filter((r) => r.type === 'import');
  const exportsRel = log.related.filter((r) => r.type === 'export');
  const webhooks = log.related.filter((r) => r.type === 'webhook');
  const items = [];
  for (const imp of imports) {
    items.push(h('li', h('span.kind', 'Import'), detailLink(imp.id), ' ',
      h('button.small', { type: 'button', onclick: () => download(`/v1/imports/${imp.id}/file`, `${imp.id}.csv`).catch((e) => toast(e.message, 'error')) }, 'Original file')));
  }
  for (const t of tasks.data) items.push(h('li', h('span.kind', 'Task'), detailLink(t.id), ` ${t.type} `, badge(t.status), ` ${t.progress.percent}%`));
  for (const e of exportsRel) items.push(h('li', h('span.kind', 'Export'), detailLink(e.id)));
  for (const w of webhooks) items.push(h('li', h('span.kind', 'Webhook'), detailLink(w.id)));
  const byEvent = new Map();
  for (const s of sendouts.data) (byEvent.get(s.event_id) || byEvent.set(s.event_id, []).get(s.event_id)).push(s);
  for (const e of events.data) {
    const own = byEvent.get(e.id) || [];
    byEvent.delete(e.id);
    items.push(h('li', h('span.kind', 'Event'), detailLink(e.id), ` ${e.type}`,
      own.length ? h('ul', own.map((s) => h('li', h('span.kind', 'Sendout'), detailLink(s.id), ' → ', h('code', s.url), ' ', badge(s.status)))) : null));
  }
  for (const [, list] of byEvent) for (const s of list) items.push(h('li', h('span.kind', 'Sendout'), detailLink(s.id), ' ', badge(s.status)));
  fill(box, items.length ? h('ul.chain', items) : h('p.muted', 'Nothing: this request changed no task, event or sendout.'));
}

function causedBy(requestId) {
  return requestId ? ['Caused by request', detailLink(requestId)] : ['Caused by request', '—'];
}

// ---- Background tasks ------------------------------------------------------------------------

const TASK_TYPES = ['import', 'export', 'webhook_recovery', 'retention_purge', 'customer_erasure'];
const TASK_STATUSES = ['scheduled', 'in_progress', 'done', 'failed', 'cancelled'];

function selectFilter(id, label, name, values, params, go) {
  return h('label.inline', `${label} `, h('select', { id, onchange: (e) => go({ [name]: e.target.value || null }) },
    h('option', { value: '' }, 'Any'), values.map((v) => h('option', { value: v, selected: params.get(name) === v }, v.replace(/_/g, ' ')))));
}

function progressBar(task) {
  const p = task.progress || {};
  return h('span.progress-cell', h('progress', { max: 100, value: p.percent ?? 0, 'aria-label': `${p.percent ?? 0}% done` }), ` ${p.percent ?? 0}%`,
    p.total ? h('span.muted', ` ${p.processed}/${p.total}`) : null);
}

async function tasksView(main, params) {
  const go = (changes) => navigate('tasks', withParams({ ...changes, cursor: null }, params));
  const filters = { ...apiFilters(params), ...rangeParams(params, 'created', '7d') };
  fill(main,
    h('div.view-head', h('h1', 'Background Tasks'),
      selectFilter('task-type', 'Type', 'type', TASK_TYPES, params, go),
      selectFilter('task-status', 'Status', 'status', TASK_STATUSES, params, go),
      selectFilter('task-processing', 'Processing', 'processing_status', ['success', 'failure'], params, go),
      rangePicker(params, 'created', go, '7d')),
    h('div#list', h('p.muted', 'Loading tasks…')));
  const columns = [
    { title: 'Task ID', cell: (t) => detailLink(t.id) },
    { title: 'Type', cell: (t) => t.type.replace(/_/g, ' ') },
    { title: 'Status', cell: (t) => badge(t.status) },
    { title: 'Processing status', cell: (t) => badge(t.processing_status) },
    { title: 'Progress', cell: progressBar },
    { title: 'Processing time', cls: 'num', cell: (t) => duration(t.processing_time_ms) },
    { title: 'Created', cell: (t) => timeCell(t.created_at, t.created_at_project) },
  ];
  const draw = async () => {
    try {
      const page = await get(`/v1/tasks${qs({ ...filters, cursor: lastCursor(params) })}`);
      fill($('#list', main), table(columns, page.data, { openId: (t) => t.id, empty: 'No task matches these filters.' }), pager(page, params, 'tasks'));
    } catch (error) { fill($('#list', main), errorBox(error)); }
  };
  await draw();
  const refresh = throttle(draw, 500);
  view.onLive = (event, task) => {
    if (event !== 'task.updated') return;
    const row = $(`#list tr[data-id="${CSS.escape(task.id)}"]`, main);
    if (row) row.replaceWith(table(columns, [task], { openId: (t) => t.id }).querySelector('tbody tr'));
    else if (!params.has('cursor')) refresh();
  };
}

async function taskDetail(id) {
  const task = await get(`/v1/tasks/${encodeURIComponent(id)}`);
  const cancel = ['scheduled', 'in_progress'].includes(task.status)
    ? h('button.danger', { type: 'button', id: 'task-cancel', onclick: async () => {
      try { await post(`/v1/tasks/${task.id}/cancel`); toast('Cancel requested'); taskDetail(id); } catch (error) { toast(error.message, 'error'); }
    } }, 'Cancel task') : null;
  const errors = task.errors || [];
  openDrawer(`Task ${task.id}`, h('div',
    h('div.detail-actions', cancel),
    fields([
      ['Task ID', h('code', task.id)], ['Type', task.type], ['Status', badge(task.status)], ['Processing status', badge(task.processing_status)],
      ['Progress', progressBar(task)], ['Processing time', duration(task.processing_time_ms)],
      ['Created', timeCell(task.created_at, task.created_at_project)], ['Started', timeCell(task.started_at, task.started_at_project)],
      ['Finished', timeCell(task.finished_at, task.finished_at_project)], ['Created by', actor(task.created_by)], causedBy(task.request_id),
    ]),
    section('Related', task.related.length ? h('ul.chain', task.related.map((r) => h('li', h('span.kind', r.type), detailLink(r.id)))) : h('p.muted', 'None')),
    section('Result', jsonView(task.result, { label: 'Result' })),
    section(`Errors (${task.error_count})`, errors.length
      ? h('div.table-wrap', h('table', h('thead', h('tr', h('th', { scope: 'col' }, 'Line'), h('th', { scope: 'col' }, 'Message'))),
        h('tbody', errors.map((e) => h('tr', h('td.num', e.line ?? '—'), h('td', e.message))))))
      : h('p.muted', 'No errors')),
  ));
  drawerLive = (event, changed) => { if (event === 'task.updated' && changed.id === task.id) throttledDetail(); };
}

const throttledDetail = throttle(() => renderDrawer(true), 400);

// ---- Exports and browsing --------------------------------------------------------------------

async function exportsView(main, params) {
  if (params.has('browse')) return browseView(main, params);
  const go = (changes) => navigate('exports', withParams({ ...changes, cursor: null }, params));
  const filters = { ...apiFilters(params), ...rangeParams(params, 'created', '30d') };
  fill(main,
    h('div.view-head', h('h1', 'Exports'),
      selectFilter('export-resource', 'Resource', 'resource', ['logs', 'tasks', 'webhook_sendouts', 'events'], params, go),
      selectFilter('export-status', 'Status', 'status', ['scheduled', 'in_progress', 'done', 'failed'], params, go),
      rangePicker(params, 'created', go, '30d')),
    h('div#list', h('p.muted', 'Loading exports…')));
  const columns = [
    { title: 'Status', cell: (e) => badge(e.status) },
    { title: 'Resource', cell: (e) => e.resource.replace(/_/g, ' ') },
    { title: 'Export ID', cell: (e) => detailLink(e.id) },
    { title: 'Scheduled by', cell: (e) => actor(e.created_by) },
    { title: 'Rows', cls: 'num', cell: (e) => e.row_count ?? '—' },
    { title: 'Created', cell: (e) => timeCell(e.created_at, e.created_at_project) },
  ];
  const draw = async () => {
    try {
      const page = await get(`/v1/exports${qs({ ...filters, cursor: lastCursor(params) })}`);
      fill($('#list', main), table(columns, page.data, { openId: (e) => e.id, empty: 'No export yet: export from the Logs tab, or POST /v1/exports.' }), pager(page, params, 'exports'));
    } catch (error) { fill($('#list', main), errorBox(error)); }
  };
  await draw();
  const refresh = throttle(draw, 500);
  view.onLive = (event) => { if (event === 'export.updated') refresh(); };
}

async function exportDetail(id) {
  const exp = await get(`/v1/exports/${encodeURIComponent(id)}`);
  const done = exp.status === 'done';
  const actions = h('div.detail-actions',
    h('button.primary', { type: 'button', id: 'export-download', disabled: !done, onclick: () => download(`/v1/exports/${exp.id}/download`, exp.file_name).catch((e) => toast(e.message, 'error')) }, 'Download CSV'),
    exp.resource === 'logs' ? h('a.button', { id: 'export-browse', href: href('exports', new URLSearchParams({ browse: exp.id })) }, 'Browse data') : null);
  openDrawer(`Export ${exp.id}`, h('div', actions,
    fields([
      ['Export ID', h('code', exp.id)], ['Status', badge(exp.status)], ['Resource', exp.resource], ['Format', exp.format],
      ['Rows', exp.row_count ?? '—'], ['Size', bytes(exp.size_bytes)], ['File', exp.file_name],
      exp.browse_status ? ['Browse data', h('span#export-browse-status', badge(exp.browse_status),
        exp.browse_status === 'indexing' ? ` ${exp.browse_indexed_rows ?? 0} of ${exp.row_count ?? '?'} rows` : '')] : null,
      ['Scheduled by', actor(exp.created_by)], causedBy(exp.request_id), ['Task', detailLink(exp.task_id)],
      ['Created', timeCell(exp.created_at, exp.created_at_project)], ['Finished', timeCell(exp.finished_at, exp.finished_at_project)],
      exp.error ? ['Error', h('span.bad-text', exp.error)] : null,
    ]),
    section('Filters (read-only)', jsonView(exp.filters, { label: 'Filters' })),
    section('Fields (read-only)', h('p', exp.fields.map((f) => h('code.tag', f)))),
  ));
  drawerLive = (event, changed) => { if (event === 'export.updated' && changed.id === exp.id) throttledDetail(); };
}

async function browseView(main, params) {
  const id = params.get('browse');
  const back = h('a.button', { href: href('exports', new URLSearchParams({ open: id })) }, '← Back to exports');
  const columnFilters = [...params].filter(([k]) => k.startsWith('filter.'));
  const search = h('input', { id: 'browse-q', type: 'search', placeholder: 'Search every column (case-insensitive)', 'aria-label': 'Search the export', value: params.get('q') || '' });
  const searchForm = h('form.inline', { role: 'search', onsubmit: (e) => { e.preventDefault(); navigate('exports', withParams({ q: search.value || null, cursor: null }, params)); } }, search, h('button.small', { type: 'submit' }, 'Search'));
  fill(main, h('div.view-head', back, h('h1', `Browse ${id}`), searchForm,
    h('button', { type: 'button', onclick: () => download(`/v1/exports/${id}/download`, `${id}.csv`).catch((e) => toast(e.message, 'error')) }, 'Download CSV')),
  h('div#browse', h('p.muted', 'Loading rows…')));
  const query = { q: params.get('q'), limit: 50, cursor: lastCursor(params) };
  for (const [k, v] of columnFilters) query[k] = v;
  let page;
  try {
    page = await get(`/v1/exports/${encodeURIComponent(id)}/rows${qs(query)}`);
  } catch (error) {
    fill($('#browse', main), h('div.error', { role: 'alert', id: 'browse-refused' }, error.message));
    return;
  }
  const colSelect = h('select', { id: 'browse-col', 'aria-label': 'Column' }, page.columns.map((c) => h('option', { value: c }, c)));
  const colValue = h('input', { id: 'browse-col-value', type: 'text', 'aria-label': 'Exact value', placeholder: 'Exact value' });
  const addFilter = h('form.inline', { onsubmit: (e) => { e.preventDefault(); if (!colValue.value) return; const next = withParams({ cursor: null }, params); next.append(`filter.${colSelect.value}`, colValue.value); navigate('exports', next); } },
    h('span', 'Column filter '), colSelect, colValue, h('button.small', { type: 'submit', 'aria-label': 'Add column filter' }, '+'));
  const chips = columnFilters.map(([k, v]) => {
    const rest = new URLSearchParams(params);
    rest.delete(k);
    rest.delete('cursor');
    return h('span.chip', `${k.slice(7)} = ${v} `, h('a.remove', { href: href('exports', rest), 'aria-label': `Remove ${k.slice(7)} filter` }, '×'));
  });
  const isJson = (v) => v !== null && typeof v === 'object';
  const columns = page.columns.map((c) => ({
    title: c,
    cell: (row) => isJson(row[c])
      ? h('button.small.json-cell', { type: 'button', onclick: () => showModal(`${c} of ${row.id || ''}`, jsonView(row[c], { label: c, open: 3 })) }, '{…} JSON')
      : String(row[c] ?? ''),
  }));
  fill($('#browse', main),
    section('Original filters (read-only)', jsonView(page.original_filters, { label: 'Filters', open: 1 })),
    addFilter, chips.length ? h('div.chips', chips) : null,
    table(columns, page.data, { empty: 'No row matches.' }),
    pager(page, params, 'exports'));
}

// ---- Webhook sendouts ------------------------------------------------------------------------

const SENDOUT_STATUSES = ['pending', 'retrying', 'delivered', 'failed'];
let webhookCache = null;

async function webhooks() {
  webhookCache ||= get('/v1/webhooks?limit=1000').then((p) => p.data).catch(() => []);
  return webhookCache;
}

async function sendoutsView(main, params) {
  const go = (changes) => navigate('sendouts', withParams({ ...changes, cursor: null }, params));
  const filters = { ...apiFilters(params), ...rangeParams(params, 'created') };
  const hooks = await webhooks();
  const eventType = h('input', { id: 'sendout-type', type: 'text', placeholder: 'order.created', value: params.get('event_type') || '', 'aria-label': 'Event type' });
  fill(main,
    h('div.view-head', h('h1', 'Webhook Sendouts'),
      selectFilter('sendout-status', 'Status', 'status', SENDOUT_STATUSES, params, go),
      h('form.inline', { onsubmit: (e) => { e.preventDefault(); go({ event_type: eventType.value || null }); } }, h('label.inline', 'Event type ', eventType)),
      h('label.inline', 'Endpoint ', h('select', { id: 'sendout-webhook', onchange: (e) => go({ webhook_id: e.target.value || null }) },
        h('option', { value: '' }, 'Any'), hooks.map((w) => h('option', { value: w.id, selected: params.get('webhook_id') === w.id }, w.url)))),
      rangePicker(params, 'created', go),
      h('button', { type: 'button', id: 'retry-all', onclick: () => retryFlow(filters, 'everything matching these filters') }, 'Retry all matching…')),
    activeChips([['http_status', 'Last HTTP status'], ['error', 'Last error'], ['source_id', 'Source ID'], ['request_id', 'Request ID']], params, 'sendouts'),
    h('div#chart.chart-slot', h('p.muted', 'Loading the histogram…')),
    h('div#groups'),
    h('div#list', h('p.muted', 'Loading sendouts…')));
  const columns = [
    { title: 'Sendout ID', cell: (s) => detailLink(s.id) },
    { title: 'Status', cell: (s) => badge(s.status) },
    { title: 'Event type', cell: (s) => h('code', s.event_type) },
    { title: 'Request ID', cell: (s) => detailLink(s.request_id) },
    { title: 'Source ID', cell: (s) => s.source_id || '—' },
    { title: 'Created', cell: (s) => timeCell(s.created_at, s.created_at_project) },
    { title: 'Sent', cell: (s) => timeCell(s.sent_at, s.sent_at_project) },
  ];
  const drawList = async () => {
    try {
      const page = await get(`/v1/webhook-sendouts${qs({ ...filters, cursor: lastCursor(params) })}`);
      fill($('#list', main), table(columns, page.data, { openId: (s) => s.id, empty: 'No sendout matches these filters.' }), pager(page, params, 'sendouts'));
    } catch (error) { fill($('#list', main), errorBox(error)); }
  };
  const drawChart = async () => {
    try {
      const data = await get(`/v1/webhook-sendouts/histogram${qs(filters)}`);
      fill($('#chart', main), histogram(data, [{ key: 'delivered', cls: 'ok', label: 'delivered' }, { key: 'failed', cls: 'bad', label: 'failed' }, { key: 'pending', cls: 'wait', label: 'pending' }],
        { label: 'Sendouts over time', onZoom: (after, before) => go({ range: null, created_after: after, created_before: before }) }));
    } catch (error) { fill($('#chart', main), errorBox(error)); }
  };
  const drawGroups = async () => {
    const groupFilters = { ...filters };
    // Failing now: given up, or still on the retry schedule.
    if (!groupFilters.status) groupFilters.status = ['failed', 'retrying'];
    try {
      const groups = (await get(`/v1/webhook-sendouts/failure-groups${qs(groupFilters)}`)).data;
      const box = $('#groups', main);
      if (!box) return;
      if (!groups.length) { fill(box); return; }
      fill(box, section('Failure groups', h('div.table-wrap', h('table#failure-groups',
        h('thead', h('tr', ['Endpoint', 'Last answer', 'Sendouts', 'Last attempt', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', groups.map((g) => {
          const groupFilter = { ...groupFilters, webhook_id: g.webhook_id, ...(g.http_status !== null ? { http_status: String(g.http_status) } : { error: g.error }) };
          return h('tr',
            h('td', h('code', g.url)),
            h('td', g.http_status !== null ? `HTTP ${g.http_status}` : FAILURE_KINDS[g.error] || g.error),
            h('td.num', String(g.count)),
            h('td', timeCell(g.last_attempt_at, g.last_attempt_at_project)),
            h('td', h('a.button.small', { href: href('sendouts', withParams({ webhook_id: g.webhook_id, http_status: g.http_status !== null ? String(g.http_status) : null, error: g.error, status: groupFilters.status }, params)) }, 'Show'),
              ' ', h('button.small.retry-group', { type: 'button', onclick: () => retryFlow(groupFilter, `this group (${g.http_status !== null ? `HTTP ${g.http_status}` : g.error} at ${g.url})`) }, 'Retry this group')));
        }))))));
    } catch (error) { fill($('#groups', main), errorBox(error)); }
  };
  await Promise.all([drawList(), drawChart(), drawGroups()]);
  const refresh = throttle(() => Promise.all([drawChart(), drawGroups()]), 1500);
  view.onLive = (event, sendout) => {
    if (event !== 'sendout.updated') return;
    const row = $(`#list tr[data-id="${CSS.escape(sendout.id)}"]`, main);
    if (row) row.replaceWith(table(columns, [sendout], { openId: (s) => s.id }).querySelector('tbody tr'));
    refresh();
  };
}

const FAILURE_KINDS = {
  timeout: 'No answer in time', connect: 'Could not connect', dns: 'Host not found', tls: 'TLS handshake failed',
  blocked: 'Address refused by the SSRF policy', read: 'The answer broke off', other: 'Other error',
};

/** A bulk retry: first the dry run (how many, which endpoints), then the task, followed live. */
async function retryFlow(filters, what) {
  const body = { filters: Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, Array.isArray(v) && v.length === 1 ? v[0] : v])) };
  let preview;
  try {
    preview = await post('/v1/webhook-sendouts/retry', { ...body, dry_run: true });
  } catch (error) { toast(error.message, 'error'); return; }
  const run = async () => {
    try {
      const task = await post('/v1/webhook-sendouts/retry', body);
      closeModal();
      toast(`Retrying ${preview.matching} sendouts in task ${task.id}`);
      navigate(route().tab, withParams({ open: task.id }));
    } catch (error) { toast(error.message, 'error'); }
  };
  showModal('Retry sendouts',
    h('p', `Retrying ${what} sends `, h('strong#retry-count', `${preview.matching} sendout${preview.matching === 1 ? '' : 's'}`), preview.webhooks.length ? ' again, to:' : ': nothing matches now.'),
    preview.webhooks.length ? h('ul', preview.webhooks.map((w) => h('li', h('code', w.url), ` — ${w.count}`))) : null,
    h('div.actions', h('button', { type: 'button', onclick: closeModal }, 'Cancel'),
      h('button.primary', { type: 'button', id: 'retry-confirm', disabled: !preview.matching, onclick: run }, 'Retry now')));
}

async function sendoutDetail(id) {
  const s = await get(`/v1/webhook-sendouts/${encodeURIComponent(id)}`);
  const event = await get(`/v1/events/${encodeURIComponent(s.event_id)}`).catch(() => null);
  const retry = h('button.primary', { type: 'button', id: 'sendout-retry', onclick: async () => {
    try { await post(`/v1/webhook-sendouts/${s.id}/retry`); toast('Retry queued'); } catch (error) { toast(error.message, 'error'); }
  } }, 'Retry');
  const attempts = s.attempts || [];
  openDrawer(`Sendout ${s.id}`, h('div',
    h('div.detail-actions', retry),
    fields([
      ['Sendout ID', h('code', s.id)], ['Status', h('span#sendout-status', badge(s.status))], ['Endpoint', h('span', h('code', s.url), ' ', detailLink(s.webhook_id))],
      ['Event', detailLink(s.event_id)], ['Event type', h('code', s.event_type)], ['Source ID', s.source_id || '—'], causedBy(s.request_id),
      ['Attempts', String(s.attempt_count)], ['Next attempt', timeCell(s.next_attempt_at, s.next_attempt_at_project)],
      ['Created', timeCell(s.created_at, s.created_at_project)], ['Sent', timeCell(s.sent_at, s.sent_at_project)], ['Delivered', timeCell(s.delivered_at, s.delivered_at_project)],
    ]),
    section(`Attempts (${attempts.length})`, attempts.length ? h('ol.attempts', attempts.map((a) => h('li',
      h('div.attempt-head', a.http_status !== null ? badge(a.http_status < 300 ? 'delivered' : 'failed') : badge('failed'),
        ` ${a.http_status !== null ? `HTTP ${a.http_status}` : 'no answer'} · ${duration(a.duration_ms)} · ${a.trigger} · `, timeCell(a.attempted_at, a.attempted_at_project)),
      a.error ? h('p.bad-text', a.error) : null,
      h('details', h('summary', 'Response headers and body'), jsonView(a.response_headers, { label: 'Response headers', open: 1 }), h('pre.body', a.response_body ?? ''))))) : h('p.muted', 'Not attempted yet')),
    section('Event payload', event ? jsonView(event.data, { label: 'Event data' }) : h('p.muted', 'The event is gone (retention or erasure).')),
  ));
  drawerLive = (e, changed) => { if (e === 'sendout.updated' && changed.id === s.id) throttledDetail(); };
}

async function eventDetail(id) {
  const e = await get(`/v1/events/${encodeURIComponent(id)}`);
  const sendouts = await get(`/v1/webhook-sendouts${qs({ created_after: '2000-01-01', limit: 100, request_id: e.request_id || undefined })}`).catch(() => ({ data: [] }));
  const own = sendouts.data.filter((s) => s.event_id === e.id);
  openDrawer(`Event ${e.id}`, h('div',
    fields([['Event ID', h('code', e.id)], ['Type', h('code', e.type)], ['Source ID', e.source_id || '—'], causedBy(e.request_id), ['Created', timeCell(e.created_at, e.created_at_project)]]),
    section('Sendouts', own.length ? h('ul.chain', own.map((s) => h('li', detailLink(s.id), ' → ', h('code', s.url), ' ', badge(s.status)))) : h('p.muted', 'No endpoint subscribed to it.')),
    section('Data', jsonView(e.data, { label: 'Event data' }))));
}

async function importDetail(id) {
  const imp = await get(`/v1/imports/${encodeURIComponent(id)}`);
  openDrawer(`Import ${imp.id}`, h('div',
    h('div.detail-actions', h('button', { type: 'button', onclick: () => download(`/v1/imports/${imp.id}/file`, imp.file.name).catch((e) => toast(e.message, 'error')) }, 'Download original file')),
    fields([['Import ID', h('code', imp.id)], ['Task', detailLink(imp.task_id)], ['File', `${imp.file.name} (${imp.file.content_type}, ${bytes(imp.file.size_bytes)})`],
      ['SHA-256', h('code', imp.file.sha256)], ['Rows', `${imp.rows_imported} imported, ${imp.rows_failed} failed of ${imp.rows_total}`]])));
}

// ---- Webhook endpoints -----------------------------------------------------------------------

async function webhooksView(main) {
  fill(main, h('div.view-head', h('h1', 'Webhooks'), h('button.primary', { type: 'button', id: 'webhook-new', onclick: () => webhookForm(null) }, 'New endpoint')),
    h('div#list', h('p.muted', 'Loading endpoints…')));
  webhookCache = null;
  const hooks = await webhooks();
  const since = new Date(Date.now() - 86400e3).toISOString();
  const rates = await Promise.all(hooks.map((w) => get(`/v1/webhook-sendouts/histogram${qs({ webhook_id: w.id, created_after: since, interval: '1h' })}`)
    .then((d) => d.buckets.reduce((acc, b) => [acc[0] + b.delivered, acc[1] + b.failed], [0, 0])).catch(() => [0, 0])));
  const columns = [
    { title: 'Endpoint', cell: (w) => h('span', h('code', w.url), w.description ? h('div.muted', w.description) : null) },
    { title: 'Events', cell: (w) => w.event_types.map((t) => h('code.tag', t)) },
    { title: 'State', cell: (w) => w.enabled ? badge('enabled') : h('span', badge('disabled'), w.disabled_reason ? h('div.muted', w.disabled_reason) : null) },
    { title: 'Success (24 h)', cls: 'num', cell: (w) => { const [ok, bad] = rates[hooks.indexOf(w)]; return ok + bad ? `${Math.round((ok / (ok + bad)) * 100)}% of ${ok + bad}` : '—'; } },
    { title: 'Actions', cell: (w) => h('span.actions-cell',
      h('button.small', { type: 'button', onclick: () => webhookForm(w) }, 'Edit'),
      h('button.small', { type: 'button', onclick: async () => { try { await api('PATCH', `/v1/webhooks/${w.id}`, { enabled: !w.enabled }); render(); } catch (e) { toast(e.message, 'error'); } } }, w.enabled ? 'Disable' : 'Enable'),
      h('button.small', { type: 'button', onclick: () => secretDialog(w) }, 'Secret'),
      h('button.small', { type: 'button', onclick: () => testEvent(w) }, 'Send test'),
      h('button.small', { type: 'button', onclick: () => recoverDialog(w) }, 'Recover…'),
      h('a.button.small', { href: href('sendouts', new URLSearchParams({ webhook_id: w.id })) }, 'Sendouts')) },
  ];
  fill($('#list', main), table(columns, hooks, { empty: 'No endpoint yet: add one to receive events.' }));
}

function webhookForm(w) {
  const url = h('input', { id: 'wh-url', type: 'url', required: true, value: w?.url || '', placeholder: 'https://example.com/webhooks' });
  const types = h('input', { id: 'wh-types', type: 'text', required: true, value: (w?.event_types || ['*']).join(', ') });
  const description = h('input', { id: 'wh-description', type: 'text', value: w?.description || '' });
  const enabled = h('input', { id: 'wh-enabled', type: 'checkbox', checked: w ? w.enabled : true });
  const status = h('div');
  const form = h('form.stack', {
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { url: url.value, event_types: types.value.split(',').map((t) => t.trim()).filter(Boolean), description: description.value || null, enabled: enabled.checked };
      try {
        const saved = w ? await api('PATCH', `/v1/webhooks/${w.id}`, body) : await post('/v1/webhooks', body);
        closeModal();
        if (!w) showModal('Endpoint created', h('p', 'Its signing secret, shown here and under Secret:'), h('code.secret', saved.secret));
        render();
      } catch (error) { fill(status, errorBox(error)); }
    },
  },
  h('label', 'URL', url), h('label', 'Event types (comma-separated; * for all, order.* for a family)', types),
  h('label', 'Description', description), h('label.check', enabled, ' Enabled'), status,
  h('div.actions', h('button.primary', { type: 'submit' }, w ? 'Save' : 'Create')));
  showModal(w ? 'Edit endpoint' : 'New endpoint', form);
}

async function secretDialog(w) {
  const box = h('div', h('p.muted', 'Hidden until revealed.'));
  const reveal = async () => {
    try { const s = await get(`/v1/webhooks/${w.id}/secret`); fill(box, h('code.secret', s.secret), ' ', h('button.small', { type: 'button', onclick: () => copyText(s.secret, 'Secret') }, 'Copy')); } catch (e) { fill(box, errorBox(e)); }
  };
  const rotate = async () => {
    try { const s = await post(`/v1/webhooks/${w.id}/secret/rotate`); fill(box, h('p', 'New secret (the old one keeps signing beside it for 24 hours):'), h('code.secret', s.secret)); } catch (e) { fill(box, errorBox(e)); }
  };
  showModal(`Signing secret of ${w.url}`, box, h('div.actions', h('button', { type: 'button', onclick: reveal }, 'Reveal'), h('button.danger', { type: 'button', onclick: rotate }, 'Rotate')));
}

async function testEvent(w) {
  try {
    const sent = await post(`/v1/webhooks/${w.id}/test`);
    toast(`Test event sent: sendout ${sent.id}`);
    navigate('sendouts', new URLSearchParams({ webhook_id: w.id, open: sent.id }));
  } catch (error) { toast(error.message, 'error'); }
}

function recoverDialog(w) {
  const since = h('input', { id: 'recover-since', type: 'datetime-local', required: true });
  const status = h('div');
  showModal(`Recover failed sendouts of ${w.url}`, h('form.stack', {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const task = await post(`/v1/webhooks/${w.id}/recover`, { since: since.value });
        closeModal();
        navigate('tasks', new URLSearchParams({ open: task.id }));
      } catch (error) { fill(status, errorBox(error)); }
    },
  }, h('label', 'Every failed sendout since (project time)', since), status, h('div.actions', h('button.primary', { type: 'submit' }, 'Recover'))));
}

// ---------------------------------------------------------------------------------------------
// Rendering the route

const DETAILS = { log_: logDetail, task_: taskDetail, exp_: exportDetail, snd_: sendoutDetail, evt_: eventDetail, imp_: importDetail };

async function renderDrawer(refresh) {
  const id = route().params.get('open');
  if (!id) { hideDrawer(); drawerLive = null; return; }
  if (id === drawerFor && !refresh) return;
  drawerFor = id;
  // A refresh keeps listening: a change that lands while it loads triggers one more. A first load
  // notes a change to its resource that lands before the detail listens (a task that finished
  // while its detail was read stayed "in progress"), and reads it again once shown.
  let changedWhileLoading = false;
  if (!refresh) drawerLive = (event, changed) => { if (changed?.id === id) changedWhileLoading = true; };
  const show = Object.entries(DETAILS).find(([prefix]) => id.startsWith(prefix))?.[1];
  if (!show) { openDrawer(id, h('p.muted', 'Nothing to show for this id.')); return; }
  if (!refresh) openDrawer(id, h('p.muted', 'Loading…'));
  try { await show(id); } catch (error) { openDrawer(id, errorBox(error)); }
  if (changedWhileLoading && drawerFor === id) throttledDetail();
}

async function render() {
  if (!session.token) return signInView();
  const { tab, params } = route();
  $$('#tabs a').forEach((a) => (a.dataset.tab === tab ? a.setAttribute('aria-current', 'page') : a.removeAttribute('aria-current')));
  document.title = `${{ logs: 'Logs', tasks: 'Background Tasks', exports: 'Exports', sendouts: 'Webhook Sendouts', webhooks: 'Webhooks' }[tab]} · Logbook`;
  const key = `${tab}?${withParams({ open: null }, params)}`;
  if (view.key !== key) {
    view = { key, onLive: null };
    const main = $('#main');
    const views = { logs: logsView, tasks: tasksView, exports: exportsView, sendouts: sendoutsView, webhooks: webhooksView };
    try { await views[tab](main, params); } catch (error) { fill(main, errorBox(error)); }
  }
  renderDrawer(false);
}

// ---------------------------------------------------------------------------------------------
// Sign in / out

function signInView() {
  $('#tabs').hidden = true;
  $('#signout').hidden = true;
  $('#who').textContent = '';
  hideDrawer();
  const token = h('input', { id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'off', placeholder: 'ut_… or sk_…' });
  const status = h('div', { id: 'signin-status' });
  const form = h('form.signin', {
    onsubmit: async (event) => {
      event.preventDefault();
      session.token = token.value.trim();
      try {
        await start();
      } catch (error) {
        session.token = null;
        fill(status, errorBox(error.status === 403 ? new Error('This token may not read the project: use a dashboard user token (ut_…) or a server key (sk_…).') : error));
      }
    },
  },
  h('h1', 'Sign in to Logbook'),
  h('p', 'Use your dashboard user token (', h('code', 'ut_…'), ') or a server key (', h('code', 'sk_…'), '). It stays in this browser tab only.'),
  h('label', { for: 'token' }, 'Token'), token, status,
  h('button.primary', { type: 'submit', id: 'signin' }, 'Sign in'));
  view = { key: null, onLive: null };
  fill($('#main'), form);
  token.focus();
}

function signOut(message) {
  session.token = null;
  session.project = null;
  live.stop();
  signInView();
  if (message) toast(message, 'error');
}

async function start() {
  session.project = await get('/v1/project');
  $('#tabs').hidden = false;
  $('#signout').hidden = false;
  $('#who').textContent = `${session.project.name} · ${session.project.time_zone}`;
  live.start();
  view = { key: null, onLive: null };
  await render();
}

// ---------------------------------------------------------------------------------------------
// Keyboard shortcuts

const SHORTCUTS = [['/', 'Search or filter'], ['j / k', 'Next / previous row'], ['Enter', 'Open the selected row'], ['Esc', 'Close the detail or dialog'], ['?', 'This list']];

document.addEventListener('keydown', (event) => {
  const typing = event.target.closest?.('input, textarea, select');
  if (event.key === 'Escape') {
    if ($('#modal').open) return;
    if (!$('#drawer').hidden) { event.preventDefault(); closeDrawer(); }
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey || !session.token) return;
  if (event.key === '/') {
    const target = $('#browse-q') || $('#filter-value') || $('#sendout-type');
    if (target) { event.preventDefault(); target.focus(); }
  } else if (event.key === 'j') moveSelection(1);
  else if (event.key === 'k') moveSelection(-1);
  else if (event.key === 'Enter' && event.target.closest?.('tr')) openSelection();
  else if (event.key === '?') {
    showModal('Keyboard shortcuts', h('dl.fields', SHORTCUTS.map(([k, what]) => [h('dt', h('kbd', k)), h('dd', what)])));
  }
});

document.addEventListener('DOMContentLoaded', () => {
  $('#drawer-close').addEventListener('click', closeDrawer);
  $('#modal-close').addEventListener('click', closeModal);
  $('#signout').addEventListener('click', () => signOut());
  window.addEventListener('popstate', render);
  window.addEventListener('hashchange', render);
  if (session.token) start().catch(() => signOut('Sign in again.'));
  else signInView();
});
