// collab.js: a small, dependency-free client for the collabd native protocol v1.
// ES module, no build step; the whole API is in docs/client.md, typed in collab.d.ts.
//
//   import { connect } from './collab.js';
//   const c = connect({ doc: 'lobby' });
//   c.on('presence', (members) => render(members));   // Map: session id -> {user, state}
//   c.on('cursor', (id, data) => move(id, data));      // data null = hidden
//   c.track({ name: 'Ada', color: '#2563eb' });
//   c.cursor({ x: 0.42, y: 0.17 });                    // throttled, latest wins
//   c.broadcast('ping', { x: 0.5, y: 0.5 });           // Promise, resolved on `ok`
//
// Transports: WebSocket first; when it cannot open or stays silent, Server-Sent Events, then
// long polling (docs/protocol.md has their HTTP shapes). The transport that worked is remembered
// for the browser session, per server, so a reload does not wait again.

const DOC_RE = /^[A-Za-z0-9_\-:.]{1,128}$/;
/** TRANSPORTS are the transport names, in the order they are tried by default. */
export const TRANSPORTS = Object.freeze(['websocket', 'sse', 'poll']);
// Close codes after which reconnecting cannot help: auth refusals. (1000 ends for good when
// the client closed; from the server it only ends a long-polling session that went unpolled
// too long, and the client opens a new one.)
const FINAL_CODES = new Set([4001, 4003]);
const RESTART_CODE = 1012; // instance restarting or draining: come back promptly
const AUTH_SETTLE = 2000; // ms: a 4001 sooner than this after a refreshed token's welcome is "at once"
const MAX_BUFFERED = 64 * 1024; // skip cursor frames while the socket is this backed up
const MAX_POST = 20 * 1024; // bytes per POST body: the server's WebSocket frame limit
const MAX_QUEUE = 1024 * 1024; // bytes waiting to be POSTed before the connection counts as broken
const SSE_IDLE = 45000; // ms without even a keep-alive comment after which a stream is dead
const POLL_WAIT = 60000; // ms a poll may take (the server answers within 25 s) before it is abandoned
const MAX_LINE = 1024 * 1024; // chars of one unfinished stream line before the stream is refused
const STORE_PREFIX = 'collabd.transport ';

/** CollabError is the rejection value of requests; `code` is the server's machine code or 'closed'/'timeout'. */
export class CollabError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'CollabError';
    this.code = code;
  }
}

// HTTP refusals of the fallback transports, as the close code a WebSocket would have seen.
// A 400 (the request itself is wrong) is reported as 4000 and stops: retrying cannot help.
const REFUSALS = { 400: 4000, 401: 4001, 403: 4003, 429: 4029, 503: RESTART_CODE };

/**
 * connect opens a connection to one document and keeps it open (reconnecting when needed).
 * See docs/client.md for the options, events and reconnect rules.
 */
export function connect(opts = {}) {
  const doc = opts.doc;
  if (typeof doc !== 'string' || !DOC_RE.test(doc) || doc === '.' || doc === '..') {
    throw new TypeError('collab: invalid document id ' + JSON.stringify(doc));
  }
  const order = transportOrder(opts);
  const base = baseURL(opts.url);
  const storeKey = STORE_PREFIX + base.href;
  const cursorInterval = 1000 / (opts.cursorHz || 30);
  const backoffMin = opts.backoffMin ?? 500;
  const backoffMax = opts.backoffMax ?? 15000;
  const timeout = opts.timeout ?? 10000;
  const openTimeout = opts.openTimeout ?? 5000;
  const remember = opts.rememberTransport !== false && order.length > 1;

  const listeners = new Map(); // event name -> Set of functions
  const pending = new Map(); // ref -> {resolve, reject, timer}
  let members = new Map(); // session id -> {user, state}
  let token = opts.token;
  let conn = null; // the current transport connection (see openWebSocket), or null
  let transport = null; // name of the transport in use or being tried
  let id = null;
  let user = null; // our user id, from welcome
  let ready = false; // welcome received on the current connection
  let stopped = false; // stopped for good: close() called or a final close code seen
  let closedByUser = false;
  let nextRef = 1;
  let attempt = 0; // failed rounds since the last welcome, for the backoff
  let retryTimer = null;
  let round = []; // transports still to try in this round, in order
  let lastGood = null; // the transport that last reached welcome in this page
  let tokenRefreshed = false; // a 4001 made us fetch a fresh token
  let opening = false; // between a round's start and its transport's opening (token pending)
  let welcomedAt = 0; // when the current connection got its welcome, 0 before

  // Presence we want the server to hold; re-applied after every (re)connect.
  let desired = null; // {type: 'presence.track', payload} | {type: 'presence.untrack'}
  let applied = null; // the last presence the server acknowledged
  let waiters = []; // track()/untrack() promises waiting for `desired` to be applied

  // Cursor throttle: only the latest value is kept, never a queue.
  let cursorLatest = null;
  let cursorDirty = false;
  let cursorSent; // JSON of the last value sent on this connection
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

  function setTransport(name) {
    if (name === transport) return;
    transport = name;
    emit('transport', name);
  }

  // startRound tries the transports from the one that last worked (in this page, else in this
  // browser session) onwards.
  function startRound() {
    retryTimer = null;
    if (stopped) return;
    const first = lastGood || (remember && order.includes(stored(storeKey)) ? stored(storeKey) : order[0]);
    round = [first, ...order.filter((n) => n !== first)];
    openNext();
  }

  async function openNext() {
    const name = round.shift();
    setTransport(name);
    let tok;
    opening = true;
    try {
      tok = typeof token === 'function' ? await token() : token;
    } catch (err) {
      opening = false;
      if (stopped) return;
      emit('error', new CollabError('connect', 'token: ' + String(err && err.message || err)));
      scheduleReconnect(1006, 'no token', false);
      return;
    }
    opening = false;
    if (stopped) return;
    welcomedAt = 0;
    const params = {};
    if (opts.user) params.user = opts.user;
    if (tok) params.token = tok;
    let c = null;
    const hooks = {
      open: () => { if (c === conn) emit('open'); },
      frame: (msg) => { if (c === conn) onFrame(msg); },
      // close(code, reason, failed, final): failed = the transport did not work at all (could
      // not open, or a stream or request that a proxy broke), as opposed to a close the server
      // decided; final = a refusal that retrying cannot help.
      close: (code, reason, failed, final) => { if (c === conn) onClose(code, reason, failed, final); },
      refused: (frames, err) => { if (c === conn) refused(frames, err); },
    };
    c = TRANSPORT_OPEN[name](base, doc, params, hooks);
    conn = c;
    c.openTimer = setTimeout(() => {
      if (c === conn && !ready) c.abort(1006, 'no welcome within ' + openTimeout / 1000 + ' s');
    }, openTimeout);
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
      conn.send(JSON.stringify(payload === undefined ? { type, ref } : { type, ref, payload }));
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

  // refused settles the requests among frames an HTTP transport could not deliver (413, 400).
  function refused(frames, err) {
    let told = false;
    for (const text of frames) {
      let ref = null;
      try { ref = JSON.parse(text).ref; } catch { /* ours, always JSON */ }
      if (!settle(ref, err) && !told) { told = true; emit('error', err); }
    }
  }

  function setMembers(next) {
    for (const mid of members.keys()) if (!next.has(mid)) emit('cursor', mid, null);
    members = next;
    emit('presence', new Map(members));
  }

  function onFrame(msg) {
    if (!msg || typeof msg !== 'object') return;
    const p = msg.payload;
    switch (msg.type) {
      case 'welcome':
        id = p && p.id;
        user = p && p.user;
        ready = true;
        attempt = 0;
        welcomedAt = Date.now();
        clearTimeout(conn.openTimer);
        lastGood = transport;
        if (remember) stored(storeKey, transport);
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
        for (const cur of Array.isArray(p) ? p : []) {
          if (cur && cur.id !== id) emit('cursor', cur.id, cur.data ?? null);
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

  function onClose(code, reason, failed, final) {
    const wasReady = ready;
    clearTimeout(conn.openTimer);
    conn = null;
    ready = false;
    id = null;
    clearTimeout(cursorTimer);
    cursorTimer = null;
    for (const ref of [...pending.keys()]) settle(ref, new CollabError('closed', 'connection closed'));
    if (members.size) setMembers(new Map());
    if (stopped) return finish(code, reason);
    if (!wasReady && failed && round.length) { openNext(); return; } // try the next transport now
    // A connection that lasted earned its token source a fresh chance.
    if (welcomedAt && Date.now() - welcomedAt >= AUTH_SETTLE) tokenRefreshed = false;
    if (code === 4001 && typeof token === 'function') {
      // A fresh token once; a refreshed token refused at once (before or right after its
      // welcome) stops, so a token source that keeps failing cannot make us spin.
      const atOnce = tokenRefreshed && (!welcomedAt || Date.now() - welcomedAt < AUTH_SETTLE);
      if (!atOnce) {
        tokenRefreshed = true;
        scheduleReconnect(code, reason, true, 0);
        return;
      }
    }
    if (FINAL_CODES.has(code) || final) {
      stopped = true;
      return finish(code, reason);
    }
    if (!wasReady && failed) reason = reason ? 'cannot connect (' + reason + ')' : 'cannot connect';
    scheduleReconnect(code, reason, wasReady);
  }

  // finish reports the end of the connection for good.
  function finish(code, reason) {
    stopListening();
    for (const w of waiters.splice(0)) w.reject(new CollabError('closed', 'connection closed'));
    emit('close', code, reason, null);
  }

  // scheduleReconnect waits (a capped, jittered exponential delay, or a short one after a 1012
  // on a joined connection), reports the close with the delay, then starts a new round.
  function scheduleReconnect(code, reason, wasReady, delay) {
    if (delay === undefined && code === RESTART_CODE && wasReady) {
      delay = 50 + Math.random() * 450; // prompt, but spread so a drained instance's clients don't stampede
    } else if (delay === undefined) {
      const cap = Math.min(backoffMax, backoffMin * 2 ** attempt++);
      delay = cap / 2 + Math.random() * cap / 2;
    }
    retryTimer = setTimeout(startRound, delay);
    emit('close', code, reason, Math.round(delay));
  }

  function reconnect() {
    if (closedByUser || conn || opening) return false;
    clearTimeout(retryTimer);
    if (stopped) { stopped = false; tokenRefreshed = false; startListening(); }
    startRound();
    return true;
  }

  const hasWindow = typeof window !== 'undefined' && typeof window.addEventListener === 'function';
  const onOnline = () => { if (retryTimer && !stopped) reconnect(); };
  // A page restored from the back/forward cache: an HTTP transport told the server we left.
  const onPageShow = (e) => { if (e.persisted && ready && desired) applyDesired(); };
  function startListening() {
    if (!hasWindow) return;
    window.addEventListener('online', onOnline);
    window.addEventListener('pageshow', onPageShow);
  }
  function stopListening() {
    if (!hasWindow) return;
    window.removeEventListener('online', onOnline);
    window.removeEventListener('pageshow', onPageShow);
  }

  // applyDesired sends the desired presence on the current connection and settles the waiters.
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
    if (conn.backedUp()) { // wait, keeping only the latest value
      cursorTimer = setTimeout(flushCursor, cursorInterval);
      return;
    }
    cursorDirty = false;
    const json = JSON.stringify(cursorLatest);
    if (json === cursorSent) return;
    cursorSent = json;
    cursorAt = Date.now();
    conn.send('{"type":"cursor","payload":' + json + '}', true);
  }

  startListening();
  queueMicrotask(startRound); // after the caller's on(...) calls: they see every event

  return {
    get id() { return id; },
    get doc() { return doc; },
    get connected() { return ready; },
    get members() { return new Map(members); },
    /** transport is the name of the transport in use (or being tried): 'websocket', 'sse' or 'poll'. */
    get transport() { return transport; },
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
    /** reconnect connects now instead of waiting for the scheduled retry (also after a final close code). */
    reconnect,
    /** close ends the connection for good (code 1000); no reconnect follows. */
    close() {
      if (closedByUser) return;
      closedByUser = true;
      const wasStopped = stopped;
      stopped = true;
      clearTimeout(retryTimer);
      retryTimer = null;
      if (conn) conn.close(1000, 'client closed');
      else if (!wasStopped) finish(1000, 'client closed');
    },
  };
}

// ---- helpers --------------------------------------------------------------------------------

function transportOrder(opts) {
  let list = opts.transports ?? (opts.transport ? [opts.transport] : TRANSPORTS);
  if (!Array.isArray(list) || list.length === 0) throw new TypeError('collab: transports must be a non-empty array');
  for (const n of list) {
    if (!TRANSPORTS.includes(n)) throw new TypeError('collab: unknown transport ' + JSON.stringify(n) + ' (want ' + TRANSPORTS.join(', ') + ')');
  }
  list = [...new Set(list)];
  return list;
}

function baseURL(url) {
  const page = typeof location !== 'undefined' ? location.href : undefined;
  if (url == null && !page) throw new TypeError('collab: url is required outside a web page');
  const u = new URL(url ?? page, page);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  if (u.protocol === 'wss:') u.protocol = 'https:';
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError('collab: url must be http(s) or ws(s): ' + u.href);
  if (url == null) u.pathname = '/';
  u.pathname = u.pathname.replace(/\/+$/, '');
  u.search = '';
  u.hash = '';
  return u;
}

function endpoint(base, kind, doc, params) {
  const u = new URL(base.href);
  u.pathname = u.pathname.replace(/\/+$/, '') + '/' + kind + '/' + encodeURIComponent(doc);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  if (kind === 'ws') u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

// stored reads (one argument) or writes sessionStorage, ignoring storage that is off or full.
function stored(key, value) {
  try {
    if (value === undefined) return sessionStorage.getItem(key);
    sessionStorage.setItem(key, value);
  } catch { /* no storage: nothing is remembered */ }
  return value;
}

function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1; // surrogate halves: 4 bytes a pair
  }
  return n;
}

function parseJSON(text) {
  try { return JSON.parse(text); } catch { return null; }
}

// ---- transports -----------------------------------------------------------------------------
//
// Each transport opener returns a connection {send(text, isCursor), backedUp(), close(code,
// reason), abort(code, reason)} and reports through hooks: open(), frame(msg), close(code,
// reason, failed, final) exactly once, refused(frames, err).

const TRANSPORT_OPEN = { websocket: openWebSocket, sse: openSSE, poll: openPoll };

// The token goes in the first message (`auth`), not the URL: kept out of access logs, and a
// refused token is a 4001 close with the server's reason (a refused upgrade is a bare 1006 in
// browsers). With auth off the server takes it as a refresh and ignores it.
function openWebSocket(base, doc, params, hooks) {
  const { token, ...query } = params;
  let opened = false;
  let done = false;
  const end = (code, reason, failed) => {
    if (done) return;
    done = true;
    hooks.close(code, reason, failed);
  };
  let ws;
  try {
    ws = new WebSocket(endpoint(base, 'ws', doc, query));
  } catch (err) {
    queueMicrotask(() => end(1006, String(err && err.message || err), true));
    return { send() {}, backedUp: () => false, close() {}, abort() {} };
  }
  ws.onopen = () => {
    opened = true;
    if (token) ws.send(JSON.stringify({ type: 'auth', payload: { token } }));
    hooks.open();
  };
  ws.onmessage = (ev) => { if (!done && typeof ev.data === 'string') hooks.frame(parseJSON(ev.data)); };
  // Before open, a failure is the transport's (a refused upgrade is 1006 in browsers); after it,
  // an abnormal close without a welcome also is (a proxy that breaks WebSocket).
  ws.onclose = (ev) => end(ev.code, ev.reason, !opened || ev.code === 1006);
  return {
    send(text) { if (ws.readyState === 1) ws.send(text); },
    backedUp: () => ws.bufferedAmount > MAX_BUFFERED,
    close(code, reason) { ws.close(code, reason); },
    abort(code, reason) {
      ws.onclose = null;
      try { ws.close(); } catch { /* already closing */ }
      end(code, reason, true);
    },
  };
}

// httpSession is what SSE and long polling share: POSTing the client's frames to the session's
// URL, one request at a time, the latest cursor replacing an unsent one; the requests in flight,
// which end() aborts; and the end, reported once.
function httpSession(base, kind, doc, hooks) {
  let postURL = null;
  const queue = []; // frames (strings) not yet POSTed, in order
  let queued = 0; // their bytes
  let cursorAt = -1; // index in queue of the unsent cursor frame, -1 if none
  let inflight = false;
  let done = false;
  const aborts = new Set(); // AbortControllers of the requests in flight
  const hasWindow = typeof window !== 'undefined' && typeof window.addEventListener === 'function';

  function onPageHide() {
    // The page goes away: tell the server we left presence now, not at the stream's or poll's
    // timeout. A page that comes back from the back/forward cache re-tracks (pageshow).
    if (!done && postURL && typeof navigator !== 'undefined' && navigator.sendBeacon) {
      navigator.sendBeacon(postURL, LEAVE_FRAMES);
    }
  }

  const s = {
    get done() { return done; },
    setSid(sid) {
      postURL = endpoint(base, kind, doc, { sid });
      if (hasWindow) window.addEventListener('pagehide', onPageHide);
      pump();
    },
    // request runs one request to its end, body read as text; end() aborts it, and so does
    // limit ms passing (0: no limit). Network failures reject.
    async request(url, init = {}, limit = 0) {
      const ctl = new AbortController();
      aborts.add(ctl);
      const timer = limit ? setTimeout(() => ctl.abort(), limit) : null;
      try {
        const res = await fetch(url, { cache: 'no-store', ...init, signal: ctl.signal });
        return { status: res.status, ok: res.ok, text: await res.text() };
      } finally {
        clearTimeout(timer);
        aborts.delete(ctl);
      }
    },
    // stream opens a request whose body the caller reads; end() aborts it.
    stream(url, init = {}) {
      const ctl = new AbortController();
      aborts.add(ctl);
      return fetch(url, { cache: 'no-store', ...init, signal: ctl.signal });
    },
    send(text, isCursor) {
      if (done) return;
      if (isCursor && cursorAt >= 0) {
        queued += utf8Length(text) - utf8Length(queue[cursorAt]);
        queue[cursorAt] = text;
        return;
      }
      if (isCursor) cursorAt = queue.length;
      queue.push(text);
      queued += utf8Length(text) + 1;
      if (queued > MAX_QUEUE) { s.end(1006, 'send queue full'); return; }
      pump();
    },
    backedUp: () => false, // an unsent cursor is replaced in the queue, which cannot grow
    // end stops everything (once) and reports the close.
    end(code, reason, failed = false, final = false) {
      if (done) return;
      done = true;
      if (hasWindow) window.removeEventListener('pagehide', onPageHide);
      for (const ctl of aborts) ctl.abort();
      hooks.close(code, reason, failed, final);
    },
    // leave is the client's own close: presence goes at once (the session itself ends when the
    // stream is dropped, or for long polling when the poll timeout passes without a poll).
    leave(code, reason) {
      if (done) return;
      if (postURL) {
        fetch(postURL, { method: 'POST', body: LEAVE_FRAMES, headers: TEXT, keepalive: true }).catch(() => {});
      }
      queueMicrotask(() => s.end(code, reason));
    },
  };

  async function pump() {
    if (inflight || done || !postURL || queue.length === 0) return;
    let n = 0;
    let size = 0;
    while (n < queue.length) {
      const len = utf8Length(queue[n]) + 1;
      if (n > 0 && size + len > MAX_POST) break;
      size += len;
      n++;
    }
    const batch = queue.splice(0, n);
    queued -= size;
    cursorAt = cursorAt >= n ? cursorAt - n : -1;
    inflight = true;
    let res;
    try {
      res = await s.request(postURL, { method: 'POST', body: batch.join('\n'), headers: TEXT });
    } catch {
      s.end(1006, 'send failed');
      return;
    } finally {
      inflight = false;
    }
    if (done) return;
    if (res.status === 413) {
      hooks.refused(batch, new CollabError('payload_too_large', 'message larger than the server accepts'));
    } else if (res.status === 400) {
      const body = parseJSON(res.text);
      hooks.refused(batch, new CollabError('bad_json', (body && body.error) || 'the server refused a frame'));
    } else if (res.status === 404 || res.status === 410) {
      const cl = closeOf(parseJSON(res.text));
      s.end(cl ? cl.code : 1006, cl ? cl.reason : 'session ended');
      return;
    } else if (!res.ok) {
      s.end(1006, 'send failed: HTTP ' + res.status);
      return;
    }
    pump();
  }
  return s;
}

const TEXT = { 'Content-Type': 'text/plain;charset=UTF-8' }; // a "simple" request: no CORS preflight
const LEAVE_FRAMES = '{"type":"cursor","payload":null}\n{"type":"presence.untrack"}';

// closeOf returns the {code, reason} of an answer's "close", or null.
function closeOf(body) {
  const cl = body && body.close;
  if (!cl || typeof cl !== 'object' || !Number.isInteger(cl.code)) return null;
  return { code: cl.code, reason: typeof cl.reason === 'string' ? cl.reason : '' };
}

// refuse ends an HTTP session whose opening request got a non-2xx answer: the statuses in
// REFUSALS are the server's decision (reported with its text reason); any other means this
// transport does not work here (an old server, a proxy in the way).
function refuse(http, status, text) {
  const reason = String(text || '').trim().slice(0, 200) || 'HTTP ' + status;
  const code = REFUSALS[status];
  if (code) http.end(code, reason, false, status === 400);
  else http.end(1006, 'HTTP ' + status, true);
}

function openSSE(base, doc, params, hooks) {
  const http = httpSession(base, 'sse', doc, hooks);
  let welcomed = false;
  let idle = null;
  // fetch rather than EventSource: it shows the status and text of a refusal (401 "token
  // expired"), and never reconnects by itself.
  (async () => {
    let res;
    try {
      res = await http.stream(endpoint(base, 'sse', doc, params), { headers: { Accept: 'text/event-stream' } });
    } catch {
      return http.end(1006, '', true);
    }
    if (http.done) return;
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      return refuse(http, res.status, text);
    }
    if (!/^text\/event-stream/i.test(res.headers.get('Content-Type') || '') || !res.body) {
      return http.end(1006, 'not an event stream', true);
    }
    hooks.open();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let event = '';
    let data = [];
    const alive = () => {
      clearTimeout(idle);
      idle = setTimeout(() => http.end(1006, 'stream silent', !welcomed), SSE_IDLE);
    };
    const dispatch = () => {
      const text = data.join('\n');
      const name = event || 'message';
      event = '';
      data = [];
      if (name === 'session') {
        const sess = parseJSON(text);
        if (sess && typeof sess.sid === 'string' && sess.sid) http.setSid(sess.sid);
      } else if (name === 'close') {
        const cl = closeOf({ close: parseJSON(text) });
        http.end(cl ? cl.code : 1006, cl ? cl.reason : '');
      } else if (name === 'message') {
        const msg = parseJSON(text);
        if (msg && msg.type === 'welcome') welcomed = true;
        hooks.frame(msg);
      }
    };
    alive();
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done || http.done) break;
        alive();
        buf += decoder.decode(chunk.value, { stream: true });
        let nl;
        while (!http.done && (nl = buf.search(/[\r\n]/)) >= 0) {
          if (buf[nl] === '\r' && nl === buf.length - 1) break; // a \r\n may be split across chunks
          const line = buf.slice(0, nl);
          buf = buf.slice(buf[nl] === '\r' && buf[nl + 1] === '\n' ? nl + 2 : nl + 1);
          if (line === '') { if (data.length) dispatch(); else event = ''; continue; }
          if (line[0] === ':') continue; // a comment: the keep-alive
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value[0] === ' ') value = value.slice(1);
          if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (buf.length > MAX_LINE) return http.end(1006, 'stream line too long', !welcomed);
      }
    } catch {
      // aborted by end(), or the network failed
    } finally {
      clearTimeout(idle);
    }
    http.end(1006, '', !welcomed);
  })();
  return {
    send: http.send,
    backedUp: http.backedUp,
    close: (code, reason) => http.leave(code, reason),
    abort: (code, reason) => http.end(code, reason, true),
  };
}

function openPoll(base, doc, params, hooks) {
  const http = httpSession(base, 'poll', doc, hooks);
  // deliver hands over an answer's messages and reports its close; false once the session ended.
  const deliver = (body) => {
    for (const msg of Array.isArray(body.messages) ? body.messages : []) {
      if (http.done) return false;
      hooks.frame(msg);
    }
    const cl = closeOf(body);
    if (cl) http.end(cl.code, cl.reason);
    return !http.done;
  };
  (async () => {
    let res;
    try {
      res = await http.request(endpoint(base, 'poll', doc, params));
    } catch {
      return http.end(1006, '', true);
    }
    if (http.done) return;
    if (!res.ok) return refuse(http, res.status, res.text);
    let body = parseJSON(res.text);
    if (!body || typeof body.sid !== 'string' || !body.sid) return http.end(1006, 'not a poll answer', true);
    hooks.open();
    http.setSid(body.sid);
    if (!deliver(body)) return;
    const url = endpoint(base, 'poll', doc, { sid: body.sid });
    while (!http.done) {
      try {
        res = await http.request(url, {}, POLL_WAIT);
      } catch {
        return http.end(1006, '');
      }
      if (http.done) return;
      body = parseJSON(res.text);
      if (!res.ok) {
        const cl = closeOf(body);
        return http.end(cl ? cl.code : 1006, cl ? cl.reason : 'poll failed: HTTP ' + res.status);
      }
      if (!body || typeof body !== 'object') return http.end(1006, 'not a poll answer');
      if (!deliver(body)) return;
    }
  })();
  return {
    send: http.send,
    backedUp: http.backedUp,
    close: (code, reason) => http.leave(code, reason),
    abort: (code, reason) => http.end(code, reason, true),
  };
}
