// app.js: the collabd multi-cursor demo. Every name is rendered with textContent, never as HTML.
import { connect } from './collab.js';

const DOC_RE = /^[A-Za-z0-9_\-:.]{1,128}$/;
const COLOR_RE = /^#[0-9a-f]{6}$/i;
const FALLBACK_COLOR = '#94a3b8';
const MAX_NAME = 32;
// Ten clearly distinct hues, each dark enough for white label text (contrast 4.5:1 or more).
// A member takes the first one no other present member uses (pickColor).
const PALETTE = ['#2563eb', '#dc2626', '#15803d', '#c2410c', '#7c3aed', '#0e7490', '#be185d', '#854d0e',
  '#475569', '#4d7c0f'];
const TRANSPORT_NAMES = { websocket: 'WebSocket', sse: 'SSE', poll: 'Long polling' };
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
const retryBtn = $('retry');
const transportEl = $('transport');
const panel = $('panel');
const toggleBtn = $('toggle');

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
  // Tentative until the members present are known (the first presence after each welcome).
  color: PALETTE.includes(store('collabd.color')) ? store('collabd.color') : PALETTE[0],
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
  statusEl.title = text;
}

// On narrow screens the panel is a bar at the bottom that opens on demand.
toggleBtn.addEventListener('click', () => {
  const open = panel.classList.toggle('open');
  toggleBtn.setAttribute('aria-expanded', String(open));
});

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
  // ?transport=sse (or a list: ?transport=sse,poll) forces the transports tried, in that order.
  const transports = params.get('transport') ? params.get('transport').split(',').map((t) => t.trim()) : undefined;
  let c;
  try {
    c = connect({ doc, user: params.get('user') || undefined, token: params.get('token') || undefined, transports });
  } catch (err) {
    setStatus('error', err.message);
    return;
  }
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

  // presence and colour: our state is tracked once the members present are known, with the first
  // palette colour none of them uses; a clash (two joined at once) is settled by the session ids.

  let colorChosen = false; // on the current connection
  const track = () => c.track({ name: me.name, color: me.color }).catch(showError);
  const othersColors = () => {
    const used = new Map(); // colour -> how many others use it
    for (const [sid, entry] of members) {
      if (sid === c.id) continue;
      const col = cleanColor(entry && entry.state && entry.state.color).toLowerCase();
      used.set(col, (used.get(col) || 0) + 1);
    }
    return used;
  };
  // pickColor returns want when no other member uses it, else the first free palette colour
  // (from start, cycling), else the least used one.
  function pickColor(want, start = 0) {
    const used = othersColors();
    if (want && !used.has(want)) return want;
    const ring = PALETTE.map((_, i) => PALETTE[(start + i) % PALETTE.length]);
    return ring.find((col) => !used.has(col)) || ring.reduce((a, b) => ((used.get(b) || 0) < (used.get(a) || 0) ? b : a));
  }
  function setColor(col) {
    const changed = col !== me.color;
    me.color = store('collabd.color', col);
    swatch.style.setProperty('--c', me.color);
    return changed;
  }
  function settleColor() {
    if (!c.connected || !c.id) return;
    if (!colorChosen) {
      colorChosen = true;
      const mine = members.get(c.id);
      const trackedNow = mine && mine.state && mine.state.color === me.color; // re-tracked after a reconnect
      if (setColor(pickColor(me.color)) || !trackedNow) track();
      return;
    }
    // Two members that chose at the same moment: the one with the larger session id moves on.
    const clash = [...members].some(([sid, entry]) => sid !== c.id && sid < c.id &&
      cleanColor(entry && entry.state && entry.state.color).toLowerCase() === me.color);
    const used = othersColors();
    const free = PALETTE.find((col) => !used.has(col));
    if (clash && free && setColor(free)) track();
  }

  let nameTimer = 0;
  nameInput.addEventListener('input', () => {
    clearTimeout(nameTimer);
    nameTimer = setTimeout(() => {
      me.name = cleanName(nameInput.value) || nameInput.placeholder;
      store('collabd.name', me.name);
      track();
    }, 250);
  });
  nameInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') nameInput.blur(); });
  swatch.addEventListener('click', () => {
    if (setColor(pickColor(null, PALETTE.indexOf(me.color) + 1))) track();
  });

  c.on('presence', (m) => {
    members = m;
    settleColor();
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
    $('toggle-count').textContent = String(rows.length);
  }

  // connection status: the transport, a countdown to the next attempt, the server's reason

  let countdown = 0;
  const reasonText = (code, reason) => {
    const r = (reason || '').trim() || { 4001: 'token missing or invalid', 4003: 'not allowed here', 1012: 'server restarting' }[code] || 'connection lost';
    return r[0].toUpperCase() + r.slice(1);
  };
  // The badge names the transport that joined last; dimmed while not connected (the status says
  // which one is being tried).
  const showTransport = (name, live) => {
    transportEl.hidden = !name;
    transportEl.textContent = TRANSPORT_NAMES[name] || name || '';
    transportEl.dataset.transport = name || '';
    transportEl.classList.toggle('stale', !live);
  };
  const stopCountdown = () => { clearInterval(countdown); countdown = 0; };
  const tryAgain = () => { if (c.reconnect()) { stopCountdown(); retryBtn.hidden = true; setStatus('connecting', 'Connecting…'); } };
  retryBtn.addEventListener('click', tryAgain);

  c.on('transport', (name) => {
    if (!countdown) setStatus('connecting', 'Connecting via ' + TRANSPORT_NAMES[name] + '…');
  });
  c.on('open', () => { stopCountdown(); retryBtn.hidden = true; setStatus('connecting', 'Joining…'); });
  c.on('welcome', () => {
    colorChosen = false;
    showTransport(c.transport, true);
    stopCountdown();
    retryBtn.hidden = true;
    setStatus('online', 'Connected');
    clearInterval(rttTimer);
    const measure = () => c.ping().then((ms) => setStatus('online', 'Connected · ' + ms + ' ms'), () => {});
    measure();
    rttTimer = setInterval(measure, 10000);
  });
  c.on('close', (code, reason, retryIn) => {
    clearInterval(rttTimer);
    showTransport(transportEl.dataset.transport, false);
    for (const cur of cursors.values()) cur.el.remove();
    cursors.clear();
    stopCountdown();
    const why = reasonText(code, reason);
    if (retryIn == null) {
      setStatus('offline', 'Disconnected: ' + why);
      retryBtn.textContent = 'Reconnect';
      retryBtn.hidden = code === 1000;
      return;
    }
    // A ticking countdown; "Retry now" skips the wait.
    const at = Date.now() + retryIn;
    const tick = () => {
      const s = Math.ceil((at - Date.now()) / 1000);
      setStatus('reconnecting', why + ' · ' + (s > 0 ? 'retrying in ' + s + ' s' : 'retrying…'));
      if (s <= 0) stopCountdown();
    };
    tick();
    if (retryIn > 0) countdown = setInterval(tick, 250);
    retryBtn.textContent = 'Retry now';
    retryBtn.hidden = false;
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
