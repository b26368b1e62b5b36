// app.js: the collabd multi-cursor demo. Every name is rendered with textContent, never as HTML.
import { connect } from './collab.js';

const DOC_RE = /^[A-Za-z0-9_\-:.]{1,128}$/;
const COLOR_RE = /^#[0-9a-f]{6}$/i;
const FALLBACK_COLOR = '#94a3b8';
const MAX_NAME = 32;
// Dark enough for white label text (contrast 4.5:1 or more) on light and dark boards.
const COLORS = ['#e11d48', '#db2777', '#c026d3', '#9333ea', '#4f46e5', '#2563eb', '#0369a1', '#0e7490',
  '#0f766e', '#047857', '#15803d', '#4d7c0f', '#a16207', '#c2410c', '#dc2626', '#7c3aed'];
const ADJECTIVES = ['Brave', 'Calm', 'Clever', 'Cosy', 'Curious', 'Eager', 'Gentle', 'Happy', 'Jolly', 'Kind',
  'Lucky', 'Mellow', 'Nimble', 'Quick', 'Quiet', 'Sunny', 'Swift', 'Witty', 'Zesty', 'Bright'];
const ANIMALS = ['Otter', 'Panda', 'Fox', 'Koala', 'Heron', 'Lynx', 'Badger', 'Falcon', 'Gecko', 'Puffin',
  'Walrus', 'Marten', 'Ibis', 'Yak', 'Wombat', 'Orca', 'Raven', 'Tapir', 'Quokka', 'Beaver'];
const SVG_NS = 'http://www.w3.org/2000/svg';
const LABEL_DX = 14; // .cursor-label left and top in style.css
const LABEL_DY = 18;
const PING_EDGE = 100; // px: closer than this to a side, a ping's label is aligned to stay on the board

const $ = (id) => document.getElementById(id);
const board = $('board');
const statusEl = $('status');
const nameInput = $('name');
const swatch = $('swatch');
const membersEl = $('members');
const countEl = $('count');
const shareInput = $('share');
const copyBtn = $('copy');

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const clamp01 = (v) => Math.min(1, Math.max(0, v));
const round4 = (v) => Math.round(v * 1e4) / 1e4;

function store(key, value) {
  try { if (value === undefined) return sessionStorage.getItem(key); sessionStorage.setItem(key, value); } catch { /* storage off */ }
  return value;
}

function cleanName(v) {
  return typeof v === 'string' ? v.replace(/\s+/g, ' ').trim().slice(0, MAX_NAME) : '';
}
function cleanColor(v) {
  return typeof v === 'string' && COLOR_RE.test(v) ? v : FALLBACK_COLOR;
}

// ---- identity -------------------------------------------------------------------------------

const me = {
  name: cleanName(store('collabd.name')) || store('collabd.name', pick(ADJECTIVES) + ' ' + pick(ANIMALS)),
  color: COLOR_RE.test(store('collabd.color') || '') ? store('collabd.color') : store('collabd.color', pick(COLORS)),
};
nameInput.value = me.name;
nameInput.placeholder = me.name;
swatch.style.setProperty('--c', me.color);

// ---- document -------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const doc = params.get('doc') || 'lobby';
const shareURL = new URL(location.pathname, location.origin);
shareURL.searchParams.set('doc', doc);
$('doc-name').textContent = doc;
shareInput.value = shareURL.toString();

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

if (!DOC_RE.test(doc) || doc === '.' || doc === '..') {
  setStatus('error', 'Invalid document');
  const p = $('doc-error');
  p.hidden = false;
  p.append('Document ids are 1-128 letters, digits or _ - : . characters. ');
  const a = document.createElement('a');
  a.href = '?doc=lobby';
  a.textContent = 'Go to the lobby';
  p.append(a);
  shareInput.value = '';
} else {
  start();
}

// ---- the live part --------------------------------------------------------------------------

function start() {
  const c = connect({ doc, user: params.get('user') || undefined, token: params.get('token') || undefined });
  window.collab = c; // handy in the console
  const cursors = new Map(); // session id -> {el, label, x, y, tx, ty, shown}
  let members = new Map();
  let rttTimer = 0;

  const display = (sid) => {
    const entry = members.get(sid);
    const state = (entry && entry.state) || {};
    return {
      name: cleanName(state.name) || cleanName(entry && entry.user) || 'guest ' + String(sid).slice(0, 4),
      color: cleanColor(state.color),
    };
  };

  // presence

  c.track({ name: me.name, color: me.color }).catch(showError);

  let nameTimer = 0;
  nameInput.addEventListener('input', () => {
    clearTimeout(nameTimer);
    nameTimer = setTimeout(() => {
      me.name = cleanName(nameInput.value) || nameInput.placeholder;
      store('collabd.name', me.name);
      c.track({ name: me.name, color: me.color }).catch(showError);
    }, 250);
  });
  nameInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') nameInput.blur(); });
  swatch.addEventListener('click', () => {
    me.color = store('collabd.color', pick(COLORS.filter((col) => col !== me.color)));
    swatch.style.setProperty('--c', me.color);
    c.track({ name: me.name, color: me.color }).catch(showError);
  });

  c.on('presence', (m) => {
    members = m;
    renderMembers();
    for (const [sid, cur] of cursors) {
      if (!members.has(sid) && !cur.shown) { cur.el.remove(); cursors.delete(sid); continue; }
      styleCursor(cur, sid);
    }
  });

  function renderMembers() {
    const rows = [...members.keys()].map((sid) => ({ sid, you: sid === c.id, ...display(sid) }));
    rows.sort((a, b) => (b.you - a.you) || a.name.localeCompare(b.name));
    const items = rows.map((r) => {
      const li = document.createElement('li');
      li.dataset.testid = 'member';
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.setProperty('--c', r.color);
      const name = document.createElement('span');
      name.className = 'member-name';
      name.dataset.testid = 'member-name';
      name.textContent = r.name;
      name.title = r.name;
      li.append(dot, name);
      if (r.you) {
        const tag = document.createElement('span');
        tag.className = 'you';
        tag.textContent = 'you';
        li.append(tag);
      }
      return li;
    });
    membersEl.replaceChildren(...items);
    countEl.textContent = String(rows.length);
  }

  // connection status

  c.on('open', () => setStatus('connecting', 'Joining…'));
  c.on('welcome', () => {
    setStatus('online', 'Connected');
    clearInterval(rttTimer);
    const measure = () => c.ping().then((ms) => setStatus('online', 'Connected · ' + ms + ' ms'), () => {});
    measure();
    rttTimer = setInterval(measure, 10000);
  });
  c.on('close', (code, reason, retryIn) => {
    clearInterval(rttTimer);
    for (const cur of cursors.values()) cur.el.remove();
    cursors.clear();
    if (retryIn != null) {
      setStatus('reconnecting', 'Reconnecting in ' + (retryIn / 1000).toFixed(1) + ' s…');
    } else {
      const why = { 4001: 'token missing or invalid', 4003: 'not allowed here' }[code] || reason || 'closed';
      setStatus('offline', 'Disconnected: ' + why);
    }
  });
  c.on('error', showError);

  function showError(err) {
    if (err && err.code === 'closed') return; // the status pill already says so
    const toast = $('toast');
    toast.textContent = (err && (err.message || err.code)) || 'Something went wrong';
    toast.hidden = false;
    clearTimeout(showError.timer);
    showError.timer = setTimeout(() => { toast.hidden = true; }, 4000);
  }

  // remote cursors

  function makeCursor() {
    const el = document.createElement('div');
    el.className = 'cursor hidden';
    el.dataset.testid = 'cursor';
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', 'M4 2.5 19.5 11l-6.6 1.8-3.2 6.7z');
    svg.append(path);
    const label = document.createElement('span');
    label.className = 'cursor-label';
    label.dataset.testid = 'cursor-label';
    el.append(svg, label);
    board.append(el);
    return { el, label, x: 0, y: 0, tx: 0, ty: 0, shown: false, lw: 0, lh: 0 };
  }

  function styleCursor(cur, sid) {
    const d = display(sid);
    if (cur.label.textContent !== d.name) { cur.label.textContent = d.name; cur.lw = 0; kick(); }
    cur.el.style.setProperty('--c', d.color);
  }

  c.on('cursor', (sid, data) => {
    let cur = cursors.get(sid);
    const valid = data && typeof data === 'object' && Number.isFinite(data.x) && Number.isFinite(data.y);
    if (!valid) {
      if (cur) { cur.shown = false; cur.el.classList.add('hidden'); }
      if (cur && !members.has(sid)) { cur.el.remove(); cursors.delete(sid); }
      return;
    }
    if (!cur) { cur = makeCursor(); cursors.set(sid, cur); styleCursor(cur, sid); }
    cur.tx = clamp01(data.x);
    cur.ty = clamp01(data.y);
    if (!cur.shown) { cur.x = cur.tx; cur.y = cur.ty; cur.shown = true; cur.el.classList.remove('hidden'); }
    kick();
  });

  // Smooth movement: every frame each cursor moves a time-based fraction toward its target.
  let raf = 0;
  let lastT = 0;
  function kick() {
    if (!raf) { lastT = 0; raf = requestAnimationFrame(frame); }
  }
  function frame(t) {
    const dt = lastT ? Math.min(100, Math.max(0, t - lastT)) : 16;
    lastT = t;
    const k = 1 - Math.exp(-dt / 45);
    const w = board.clientWidth;
    const h = board.clientHeight;
    let moving = false;
    for (const cur of cursors.values()) { // all layout reads before any write
      if (!cur.lw) { cur.lw = cur.label.offsetWidth; cur.lh = cur.label.offsetHeight; }
    }
    for (const cur of cursors.values()) {
      const dx = cur.tx - cur.x;
      const dy = cur.ty - cur.y;
      if (Math.abs(dx * w) + Math.abs(dy * h) > 0.5) {
        cur.x += dx * k;
        cur.y += dy * k;
        moving = true;
      } else {
        cur.x = cur.tx;
        cur.y = cur.ty;
      }
      cur.el.style.transform = `translate3d(${(cur.x * w).toFixed(1)}px, ${(cur.y * h).toFixed(1)}px, 0)`;
      // Near the right or bottom edge the label goes to the other side of the arrow, so it stays readable.
      cur.el.classList.toggle('flip-x', cur.x * w + LABEL_DX + cur.lw > w);
      cur.el.classList.toggle('flip-y', cur.y * h + LABEL_DY + cur.lh > h);
    }
    raf = moving ? requestAnimationFrame(frame) : 0;
  }
  window.addEventListener('resize', kick);

  // our own pointer

  function norm(e) {
    const r = board.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) return null;
    return { x: round4(clamp01((e.clientX - r.left) / r.width)), y: round4(clamp01((e.clientY - r.top) / r.height)) };
  }
  const move = (e) => { const p = norm(e); if (p) c.cursor(p); };
  window.addEventListener('pointermove', move, { passive: true });
  window.addEventListener('pointerdown', move, { passive: true });
  const hide = () => c.cursor(null);
  window.addEventListener('pointerup', (e) => { if (e.pointerType !== 'mouse') hide(); });
  window.addEventListener('pointercancel', hide);
  document.addEventListener('pointerout', (e) => { if (!e.relatedTarget) hide(); });
  window.addEventListener('blur', hide);
  document.addEventListener('visibilitychange', () => { if (document.hidden) hide(); });

  // pings: drawn locally for our own clicks, since broadcasts are not echoed

  let lastPing = 0;
  board.addEventListener('click', (e) => {
    const now = performance.now();
    const at = norm(e);
    if (!at || now - lastPing < 80) return;
    lastPing = now;
    const p = { ...at, color: me.color, name: me.name };
    ring(p);
    c.broadcast('ping', p).catch(showError);
  });
  c.on('broadcast', (msg) => {
    if (!msg || msg.event !== 'ping') return;
    const d = msg.data || {};
    if (!Number.isFinite(d.x) || !Number.isFinite(d.y)) return;
    ring({ x: clamp01(d.x), y: clamp01(d.y), color: cleanColor(d.color), name: cleanName(d.name) || display(msg.from).name });
  });

  function ring(p) {
    const el = document.createElement('div');
    el.className = 'ping';
    el.dataset.testid = 'ping';
    el.style.setProperty('--c', cleanColor(p.color));
    el.style.left = (p.x * 100) + '%';
    el.style.top = (p.y * 100) + '%';
    // The label sits above the point, clear of the sender's cursor label (below right), and
    // moves inward near the edges of the board.
    const w = board.clientWidth;
    if (p.x * w < PING_EDGE) el.classList.add('edge-left');
    else if ((1 - p.x) * w < PING_EDGE) el.classList.add('edge-right');
    if (p.y * board.clientHeight < 40) el.classList.add('edge-top');
    const wave = document.createElement('span');
    wave.className = 'ping-ring';
    const label = document.createElement('span');
    label.className = 'ping-label';
    label.dataset.testid = 'ping-label';
    label.textContent = cleanName(p.name);
    el.append(wave, label);
    board.append(el);
    const done = () => el.remove();
    el.addEventListener('animationend', (e) => { if (e.target === el) done(); });
    setTimeout(done, 2000); // reduced motion or no animation support
  }

  // share link

  copyBtn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(shareInput.value);
    } catch {
      shareInput.select();
      document.execCommand && document.execCommand('copy');
    }
    copyBtn.textContent = 'Copied';
    setTimeout(() => { copyBtn.textContent = 'Copy'; }, 1500);
  });
  shareInput.addEventListener('focus', () => shareInput.select());
}
