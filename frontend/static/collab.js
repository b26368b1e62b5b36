// collab.js: a small, dependency-free browser client for the collabd native protocol v1.
// ES module, no build step. The protocol is described in docs/protocol.md (DESIGN.md section 3).
//
//   import { connect } from './collab.js';
//   const c = connect({ doc: 'lobby' });
//   c.on('presence', (members) => render(members));   // Map: session id -> {user, state}
//   c.on('cursor', (id, data) => move(id, data));      // data null = hidden
//   c.track({ name: 'Ada', color: '#2563eb' });
//   c.cursor({ x: 0.42, y: 0.17 });                    // throttled, latest wins
//   c.broadcast('ping', { x: 0.5, y: 0.5 });           // Promise, resolved on `ok`

const DOC_RE = /^[A-Za-z0-9_\-:.]{1,128}$/;
// Close codes after which reconnecting cannot help: normal close and auth refusals.
const FINAL_CODES = new Set([1000, 4001, 4003]);
const RESTART_CODE = 1012; // instance restarting or draining: come back promptly
const MAX_BUFFERED = 64 * 1024; // skip cursor frames while the socket is this backed up

/** CollabError is the rejection value of requests; `code` is the server's machine code or 'closed'/'timeout'. */
export class CollabError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'CollabError';
    this.code = code;
  }
}

/**
 * connect opens a connection to one document and keeps it open (reconnecting when needed).
 * opts: doc (required), url (server base, default the page's origin), user (display id when
 * auth is off), token (JWT string, or a function returning one or a Promise of one, called before
 * every (re)connect), cursorHz (default 30), backoffMin/backoffMax ms (500/15000), timeout ms (10000).
 */
export function connect(opts = {}) {
  const doc = opts.doc;
  if (typeof doc !== 'string' || !DOC_RE.test(doc) || doc === '.' || doc === '..') {
    throw new TypeError('collab: invalid document id ' + JSON.stringify(doc));
  }
  const cursorInterval = 1000 / (opts.cursorHz || 30);
  const backoffMin = opts.backoffMin ?? 500;
  const backoffMax = opts.backoffMax ?? 15000;
  const timeout = opts.timeout ?? 10000;

  const listeners = new Map(); // event name -> Set of functions
  const pending = new Map(); // ref -> {resolve, reject, timer}
  let members = new Map(); // session id -> {user, state}
  let token = opts.token;
  let ws = null;
  let id = null;
  let user = null; // our user id, from welcome
  let ready = false; // welcome received on the current socket
  let stopped = false; // close() called or a final close code seen
  let nextRef = 1;
  let attempt = 0;
  let retryTimer = null;

  // Presence we want the server to hold; re-applied after every (re)connect.
  let desired = null; // {type: 'presence.track', payload} | {type: 'presence.untrack'}
  let applied = null; // the last presence the server acknowledged
  let waiters = []; // track()/untrack() promises waiting for `desired` to be applied

  // Cursor throttle: only the latest value is kept, never a queue.
  let cursorLatest = null;
  let cursorDirty = false;
  let cursorSent; // JSON of the last value sent on this socket
  let cursorTimer = null;
  let cursorAt = 0;

  function on(name, fn) {
    if (!listeners.has(name)) listeners.set(name, new Set());
    listeners.get(name).add(fn);
    return () => off(name, fn);
  }
  function off(name, fn) {
    listeners.get(name)?.delete(fn);
  }
  function emit(name, ...args) {
    for (const fn of listeners.get(name) || []) {
      try { fn(...args); } catch (err) { console.error('collab: "' + name + '" listener failed', err); }
    }
  }

  function endpoint(tok) {
    const u = new URL(opts.url || location.origin, location.href);
    u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'wss:' : 'ws:';
    u.pathname = u.pathname.replace(/\/+$/, '') + '/ws/' + encodeURIComponent(doc);
    u.search = '';
    u.hash = '';
    if (opts.user) u.searchParams.set('user', opts.user);
    if (tok) u.searchParams.set('token', tok);
    return u.toString();
  }

  async function open() {
    retryTimer = null;
    if (stopped) return;
    let sock;
    try {
      const tok = typeof token === 'function' ? await token() : token;
      if (stopped) return;
      sock = new WebSocket(endpoint(tok));
    } catch (err) {
      emit('error', new CollabError('connect', String(err && err.message || err)));
      scheduleReconnect(1006);
      return;
    }
    ws = sock;
    sock.onopen = () => { if (sock === ws) emit('open'); };
    sock.onmessage = (ev) => { if (sock === ws) onMessage(ev); };
    sock.onclose = (ev) => { if (sock === ws) onClose(ev.code, ev.reason); };
  }

  function send(msg) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
  }

  function request(type, payload) {
    return new Promise((resolve, reject) => {
      if (!ready) return reject(new CollabError('closed', 'not connected'));
      const ref = String(nextRef++);
      const timer = setTimeout(() => {
        pending.delete(ref);
        reject(new CollabError('timeout', type + ' got no reply'));
      }, timeout);
      pending.set(ref, { resolve, reject, timer });
      send(payload === undefined ? { type, ref } : { type, ref, payload });
    });
  }

  function settle(ref, err, value) {
    const p = ref != null && pending.get(ref);
    if (!p) return false;
    pending.delete(ref);
    clearTimeout(p.timer);
    if (err) p.reject(err); else p.resolve(value);
    return true;
  }

  function setMembers(next) {
    for (const mid of members.keys()) if (!next.has(mid)) emit('cursor', mid, null);
    members = next;
    emit('presence', new Map(members));
  }

  function onMessage(ev) {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (!msg || typeof msg !== 'object') return;
    const p = msg.payload;
    switch (msg.type) {
      case 'welcome':
        id = p && p.id;
        user = p && p.user;
        ready = true;
        attempt = 0;
        cursorSent = undefined;
        cursorDirty = cursorLatest !== null; // show our cursor again after a reconnect
        emit('welcome', p);
        if (desired) applyDesired();
        scheduleCursor();
        break;
      case 'presence.state':
        setMembers(new Map(Object.entries(p || {})));
        break;
      case 'presence.diff': {
        const next = new Map(members);
        const joins = (p && p.joins) || {};
        for (const lid of Object.keys((p && p.leaves) || {})) {
          if (!(lid in joins)) { next.delete(lid); emit('cursor', lid, null); }
        }
        for (const [jid, entry] of Object.entries(joins)) next.set(jid, entry);
        members = next;
        emit('presence', new Map(members));
        break;
      }
      case 'cursors':
        for (const c of Array.isArray(p) ? p : []) {
          if (c && c.id !== id) emit('cursor', c.id, c.data ?? null);
        }
        break;
      case 'broadcast':
        emit('broadcast', p);
        break;
      case 'ok':
      case 'pong':
        settle(msg.ref, null, p);
        break;
      case 'error': {
        const err = new CollabError((p && p.code) || 'error', p && p.message);
        if (!settle(msg.ref, err)) emit('error', err);
        break;
      }
    }
  }

  function onClose(code, reason) {
    ws = null;
    ready = false;
    id = null;
    clearTimeout(cursorTimer);
    cursorTimer = null;
    for (const ref of [...pending.keys()]) settle(ref, new CollabError('closed', 'connection closed'));
    if (members.size) setMembers(new Map());
    if (stopped || FINAL_CODES.has(code)) {
      stopped = true;
      stopListening();
      for (const w of waiters.splice(0)) w.reject(new CollabError('closed', 'connection closed'));
      emit('close', code, reason, null);
      return;
    }
    emit('close', code, reason, scheduleReconnect(code));
  }

  // scheduleReconnect waits a capped, jittered exponential delay; returns the delay in ms.
  function scheduleReconnect(code) {
    let delay;
    if (code === RESTART_CODE) {
      delay = 50 + Math.random() * 450; // prompt, but spread so a drained instance's clients don't stampede
    } else {
      const cap = Math.min(backoffMax, backoffMin * 2 ** attempt++);
      delay = cap / 2 + Math.random() * cap / 2;
    }
    retryTimer = setTimeout(open, delay);
    return Math.round(delay);
  }

  function reconnectNow() {
    if (retryTimer && !stopped) { clearTimeout(retryTimer); open(); }
  }
  const hasWindow = typeof window !== 'undefined' && window.addEventListener;
  if (hasWindow) window.addEventListener('online', reconnectNow);
  function stopListening() {
    if (hasWindow) window.removeEventListener('online', reconnectNow);
  }

  // applyDesired sends the desired presence on the current socket and settles the waiters.
  // A connection loss keeps them waiting for the next welcome; a server error rejects them.
  function applyDesired() {
    const want = desired;
    const batch = waiters.splice(0);
    request(want.type, want.payload).then(
      () => {
        applied = want;
        applyOwn(want);
        for (const w of batch) w.resolve();
      },
      (err) => {
        if (err.code === 'closed' && !stopped) { waiters.push(...batch); return; }
        if (desired === want && err.code !== 'timeout') desired = applied; // refused: keep the last good one
        for (const w of batch) w.reject(err);
      });
  }

  // applyOwn mirrors an acknowledged track/untrack into members, whether or not the server
  // also sends this session its own diff.
  function applyOwn(want) {
    if (!ready || !id) return;
    const cur = members.get(id);
    if (want.type === 'presence.untrack') {
      if (cur) setMembers(new Map([...members].filter(([mid]) => mid !== id)));
      return;
    }
    if (cur && JSON.stringify(cur.state) === JSON.stringify(want.payload)) return;
    members = new Map(members).set(id, { user: cur ? cur.user : user, state: want.payload });
    emit('presence', new Map(members));
  }

  function setPresence(want) {
    if (stopped) return Promise.reject(new CollabError('closed', 'connection closed'));
    desired = want;
    return new Promise((resolve, reject) => {
      waiters.push({ resolve, reject });
      if (ready) applyDesired();
    });
  }

  function scheduleCursor() {
    if (cursorTimer || !ready || !cursorDirty) return;
    const wait = Math.max(0, cursorAt + cursorInterval - Date.now());
    cursorTimer = setTimeout(flushCursor, wait);
  }

  function flushCursor() {
    cursorTimer = null;
    if (!ready || !cursorDirty) return;
    if (ws.bufferedAmount > MAX_BUFFERED) { // backed up: wait, keeping only the latest value
      cursorTimer = setTimeout(flushCursor, cursorInterval);
      return;
    }
    cursorDirty = false;
    const json = JSON.stringify(cursorLatest);
    if (json === cursorSent) return;
    cursorSent = json;
    cursorAt = Date.now();
    ws.send('{"type":"cursor","payload":' + json + '}');
  }

  open();

  return {
    get id() { return id; },
    get doc() { return doc; },
    get connected() { return ready; },
    get members() { return new Map(members); },
    on,
    off,
    /** cursor sends the pointer position (an object) or null to hide it; at most cursorHz per second, latest wins. */
    cursor(data) {
      cursorLatest = data === undefined ? null : data;
      cursorDirty = true;
      scheduleCursor();
    },
    /** track replaces this session's presence state; kept and re-tracked after reconnects. */
    track(state) { return setPresence({ type: 'presence.track', payload: state }); },
    /** untrack removes this session from presence while staying connected. */
    untrack() { return setPresence({ type: 'presence.untrack' }); },
    /** broadcast sends an event to every other member; resolves on the server's `ok`. */
    broadcast(event, data) {
      if (typeof event !== 'string' || !event) return Promise.reject(new TypeError('collab: event must be a non-empty string'));
      return request('broadcast', { event, data: data === undefined ? null : data });
    },
    /** ping resolves with the round-trip time in milliseconds. */
    ping() {
      const t0 = performance.now();
      return request('ping', { t: Date.now() }).then(() => Math.round(performance.now() - t0));
    },
    /** auth hands the server a fresh token (and uses it for later reconnects). */
    auth(newToken) {
      token = newToken;
      return ready ? request('auth', { token: newToken }) : Promise.resolve();
    },
    /** close ends the connection for good (code 1000); no reconnect follows. */
    close() {
      if (stopped) return;
      stopped = true;
      clearTimeout(retryTimer);
      retryTimer = null;
      if (ws) {
        ws.close(1000, 'client closed');
      } else {
        stopListening();
        for (const w of waiters.splice(0)) w.reject(new CollabError('closed', 'connection closed'));
        emit('close', 1000, 'client closed', null);
      }
    },
  };
}
