// End-to-end test: the real @supabase/realtime-js client (plus a raw native-protocol
// client) against two collabd instances that share one NATS.
//
//   npm ci
//   COLLABD_URL_A=http://127.0.0.1:8080 COLLABD_URL_B=http://127.0.0.1:8081 node --test e2e.test.mjs
//
// Environment:
//   COLLABD_URL_A, COLLABD_URL_B  http(s) base URLs of two collabd instances (required)
//   COLLABD_APIKEY                apikey sent by realtime-js (query param) and the REST call
//                                 (header); default "collabd-e2e-anon-key"
//
// Contract: ../shared/DESIGN.md (beside the project) sections 3 (native protocol) and 6 (Supabase compatibility),
// frames captured from the real client in ../shared/reference/realtime-js-frames.md.
//
// Every wait is bounded; every socket opened here is closed (or terminated) at the end of the
// test that opened it, and again by a global after() hook, so the process exits by itself.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocket } from 'ws'
import { RealtimeClient } from '@supabase/realtime-js'

// ---------------------------------------------------------------------------------------------
// configuration

const APIKEY = process.env.COLLABD_APIKEY || 'collabd-e2e-anon-key'
const HEARTBEAT_MS = 3000 // realtime-js default is 25000; short so heartbeats happen during tests
const PUSH_TIMEOUT_MS = 5000 // realtime-js push/join timeout (default 10000)
const WAIT_MS = 8000 // default bound for one waitFor
const SETTLE_MS = 500 // how long "nothing more arrives" is observed
const DISCONNECT_FALLBACK_MS = 3000 // see Rt constructor
const TEST_TIMEOUT_MS = 45_000
const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 0xffff).toString(16)}`

function instance(name, envName) {
  const raw = process.env[envName]
  if (!raw) return { error: `${envName} is not set` }
  let url
  try {
    url = new URL(raw)
  } catch {
    return { error: `${envName}=${JSON.stringify(raw)} is not a URL` }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `${envName}=${raw}: want an http:// or https:// base URL` }
  }
  const path = url.pathname.replace(/\/+$/, '')
  const http = `${url.protocol}//${url.host}${path}`
  const ws = `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}${path}`
  return {
    name,
    http,
    // realtime-js (Phoenix) appends "/websocket" itself: this becomes /realtime/v1/websocket
    realtimeEndpoint: `${ws}/realtime/v1`,
    // ... and this one /socket/websocket (the second endpoint of DESIGN section 6)
    socketEndpoint: `${ws}/socket`,
    wsBase: ws,
    restBroadcast: `${http}/realtime/v1/api/broadcast`,
  }
}

const A = instance('A', 'COLLABD_URL_A')
const B = instance('B', 'COLLABD_URL_B')
const CONFIG_ERROR = [A.error, B.error].filter(Boolean).join('; ')

// ---------------------------------------------------------------------------------------------
// generic helpers

const uniq = (prefix) => `${prefix}-${RUN}`
const clip = (s, n = 300) => (s.length > n ? `${s.slice(0, n)}...(${s.length} chars)` : s)
const show = (v) => {
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

/** Polls cond() every 25 ms until it returns something truthy (returned) or timeoutMs passes. */
async function waitFor(cond, timeoutMs = WAIT_MS, what = 'condition', diag = null) {
  const deadline = Date.now() + timeoutMs
  let lastErr
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
    } catch (e) {
      if (e.fatal) throw new Error(`while waiting for: ${what}\n${e.message}${diag ? `\n${diag()}` : ''}`)
      lastErr = e
    }
    if (Date.now() >= deadline) {
      let msg = `timed out after ${timeoutMs} ms waiting for: ${what}`
      if (lastErr) msg += `\n  last error in condition: ${lastErr.message}`
      if (diag) msg += `\n${diag()}`
      throw new Error(msg)
    }
    await sleep(25)
  }
}

/**
 * Rejects after ms unless p settles first. The timer is cleared when p settles and is unref'd,
 * so a race that was abandoned (e.g. the other half of a failed Promise.all after cleanup)
 * never keeps the process alive.
 */
async function bounded(p, ms, what) {
  let timer
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    timer.unref()
  })
  try {
    return await Promise.race([p, t])
  } finally {
    clearTimeout(timer)
  }
}

const errText = (e) => {
  const parts = [e?.message ?? String(e)]
  for (let c = e?.cause, i = 0; c && i < 3; c = c.cause, i++) {
    const m = c.code || c.message || (c.error && c.error.message)
    if (m && !parts.includes(m)) parts.push(m)
  }
  return parts.join(': ')
}

// ---------------------------------------------------------------------------------------------
// preflight: fail fast and clearly when an instance is not there

let preflightPromise
function preflight() {
  preflightPromise ??= (async () => {
    const problems = []
    for (const inst of [A, B]) {
      const url = `${inst.http}/healthz`
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(3000) })
        await res.arrayBuffer()
        if (res.status !== 200) problems.push(`collabd ${inst.name}: GET ${url} -> HTTP ${res.status}`)
      } catch (e) {
        const hint = /bad port/.test(errText(e)) ? '; fetch() refuses this port (WHATWG "bad ports" list), use another' : ''
        problems.push(`collabd ${inst.name} not reachable: GET ${url} failed (${errText(e)}${hint})`)
      }
    }
    if (problems.length) {
      throw new Error(`preflight failed, is collabd running?\n  ${problems.join('\n  ')}`)
    }
  })()
  return preflightPromise
}

// ---------------------------------------------------------------------------------------------
// wire tap: a `ws` WebSocket subclass given to realtime-js as its transport; it records every
// frame in both directions (decoded) so tests can look at the protocol (phx_leave reply, vsn)

const liveSockets = new Set() // every ws opened by this file, for the final cleanup

class Tap {
  constructor(label) {
    this.label = label
    this.url = undefined
    this.frames = [] // {dir:'out'|'in', binary, form:'array'|'object'|'binary', kind?, join_ref, ref, topic, event, payload, raw}
    this.sockets = new Set()
    this.errors = [] // exceptions thrown by realtime-js while handling a received frame
  }

  errorText() {
    return this.errors.map((e) => `${this.label}: realtime-js threw while handling a server frame: ${e.error?.message ?? e.error} (frame: ${clip(e.frame ?? '?')})`).join('\n')
  }

  record(dir, data, isBinary) {
    let f
    try {
      if (isBinary) {
        const buf = Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data)
        f = decodeBinary(dir, buf)
      } else {
        const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8')
        const v = JSON.parse(text)
        f = Array.isArray(v)
          ? { dir, binary: false, form: 'array', join_ref: v[0], ref: v[1], topic: v[2], event: v[3], payload: v[4], raw: text }
          : { dir, binary: false, form: 'object', ...v, raw: text }
      }
    } catch (e) {
      f = { dir, binary: !!isBinary, form: 'undecodable', raw: String(data), error: e.message }
    }
    this.frames.push(f)
  }

  get out() {
    return this.frames.filter((f) => f.dir === 'out')
  }

  get in() {
    return this.frames.filter((f) => f.dir === 'in')
  }

  tail(n = 12) {
    return this.frames
      .slice(-n)
      .map((f) => `    ${this.label} ${f.dir === 'out' ? 'C->S' : 'S->C'} ${f.binary ? `binary kind=${f.kind} ` : ''}${clip(f.binary ? show({ topic: f.topic, event: f.event, payload: f.payload }) : f.raw)}`)
      .join('\n')
  }
}

// Phoenix/Supabase vsn 2.0.0 binary frames (lib/serializer.ts): kind 3 = userBroadcastPush
// (client -> server), kind 4 = userBroadcast (server -> client).
function decodeBinary(dir, buf) {
  const kind = buf[0]
  const str = (o, n) => buf.subarray(o, o + n).toString('utf8')
  if (kind === 3) {
    const [jr, r, t, e, m, enc] = buf.subarray(1, 7)
    let o = 7
    const join_ref = str(o, jr); o += jr
    const ref = str(o, r); o += r
    const topic = str(o, t); o += t
    const event = str(o, e); o += e
    o += m
    const body = buf.subarray(o)
    const payload = enc === 1 ? JSON.parse(body.toString('utf8')) : body
    return { dir, binary: true, form: 'binary', kind, join_ref, ref, topic, event: 'broadcast', payload: { type: 'broadcast', event, payload } }
  }
  if (kind === 4) {
    const [t, e, m, enc] = buf.subarray(1, 5)
    let o = 5
    const topic = str(o, t); o += t
    const event = str(o, e); o += e
    o += m
    const body = buf.subarray(o)
    const payload = enc === 1 ? JSON.parse(body.toString('utf8')) : body
    return { dir, binary: true, form: 'binary', kind, join_ref: null, ref: null, topic, event: 'broadcast', payload: { type: 'broadcast', event, payload } }
  }
  return { dir, binary: true, form: 'binary', kind, raw: buf.toString('hex') }
}

function tapTransport(tap) {
  return class TapWebSocket extends WebSocket {
    constructor(address, protocols, options) {
      super(address, protocols, options)
      tap.url = String(address)
      tap.sockets.add(this)
      liveSockets.add(this)
      this.on('message', (data, isBinary) => tap.record('in', data, isBinary))
      this.on('close', () => liveSockets.delete(this))
    }

    send(data, ...rest) {
      tap.record('out', data, typeof data !== 'string')
      return super.send(data, ...rest)
    }

    // Phoenix sets conn.onmessage. In a browser an exception thrown by that handler (e.g. a frame
    // the client cannot decode) is reported and the socket lives on; under node it would be an
    // uncaughtException pinned on whatever test runs. Record it instead; tests report it.
    get onmessage() {
      return super.onmessage
    }

    set onmessage(fn) {
      super.onmessage =
        typeof fn === 'function'
          ? (ev) => {
              try {
                return fn(ev)
              } catch (error) {
                const last = tap.in.at(-1)
                tap.errors.push({ error, frame: last?.raw ?? (last ? show({ kind: last.kind, topic: last.topic, payload: last.payload }) : undefined) })
              }
            }
          : fn
    }
  }
}

async function closeWs(ws, ms = 1500) {
  if (ws.readyState === WebSocket.CLOSED) return
  try {
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'e2e done')
    await waitFor(() => ws.readyState === WebSocket.CLOSED, ms, 'websocket close')
  } catch {
    // server did not finish the close handshake in time: do not wait for ws's 30 s timer
  } finally {
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
    liveSockets.delete(ws)
  }
}

// ---------------------------------------------------------------------------------------------
// realtime-js wrapper

class Rt {
  constructor(inst, label, { vsn, endpoint } = {}) {
    this.label = label
    this.tap = new Tap(label)
    this.heartbeats = []
    this.logs = []
    this.chans = []
    const options = {
      transport: tapTransport(this.tap), // required on Node 20 (no global WebSocket)
      params: { apikey: APIKEY },
      heartbeatIntervalMs: HEARTBEAT_MS,
      timeout: PUSH_TIMEOUT_MS,
      heartbeatCallback: (status) => this.heartbeats.push(status),
      // a logger also keeps realtime-js from printing its REST-fallback warning to the console
      logger: (kind, msg) => {
        this.logs.push(`${kind}: ${msg}`)
        if (this.logs.length > 200) this.logs.shift()
      },
    }
    if (vsn) options.vsn = vsn
    this.client = new RealtimeClient(endpoint ?? inst.realtimeEndpoint, options)
    // RealtimeClient.disconnect() awaits SocketAdapter.disconnect(cb, code, reason, timeout = 10000),
    // which arms a fallback timer it never clears: every disconnect() would keep node alive for
    // 10 s. Shorten that fallback (internal, checked to exist in the pinned version); the public
    // disconnect() code path itself is unchanged.
    const sa = this.client.socketAdapter
    if (sa && typeof sa.disconnect === 'function') {
      const orig = sa.disconnect.bind(sa)
      sa.disconnect = (cb, code, reason) => orig(cb, code, reason, DISCONNECT_FALLBACK_MS)
    }
  }

  /**
   * channel(doc) is topic "realtime:<doc>" (realtime-js adds the prefix).
   * opts.events: broadcast events to listen to; opts.presence: bind presence listeners
   * (which also makes realtime-js send presence.enabled=true in phx_join).
   */
  channel(doc, config, { events = ['cursor'], presence = false } = {}) {
    const c = new Chan(this, doc, config, { events, presence })
    this.chans.push(c)
    return c
  }

  async close() {
    this.closed = true
    const c = this.client
    try {
      // Phoenix can schedule a reconnect from a teardown that was already in flight when
      // disconnect() ran (heartbeat timeout racing with disconnect), and then reconnect forever.
      // Once closed, this client must never connect again (internal, checked to exist).
      const sock = c.socketAdapter?.getSocket?.()
      if (sock && typeof sock.connect === 'function') {
        sock.connect = () => {}
        sock.reconnectTimer?.reset?.()
      }
      for (const ch of c.getChannels()) ch.teardown() // stops rejoin timers and pending join pushes
      await bounded(c.disconnect(1000, 'e2e done'), DISCONNECT_FALLBACK_MS + 1000, `${this.label} disconnect`).catch(() => {})
    } finally {
      for (const ws of this.tap.sockets) await closeWs(ws, 500)
    }
  }
}

class Chan {
  constructor(rt, doc, config, { events, presence }) {
    this.rt = rt
    this.doc = doc
    this.topic = `realtime:${doc}`
    this.ch = rt.client.channel(doc, { config })
    this.received = [] // broadcast callbacks: {type:'broadcast', event, payload}
    this.joins = []
    this.leaves = []
    this.syncs = 0
    this.statuses = []
    this.presence = presence
    for (const ev of events) this.ch.on('broadcast', { event: ev }, (m) => this.received.push(m))
    if (presence) {
      this.ch.on('presence', { event: 'join' }, (p) => this.joins.push(p))
      this.ch.on('presence', { event: 'leave' }, (p) => this.leaves.push(p))
      this.ch.on('presence', { event: 'sync' }, () => this.syncs++)
    }
  }

  /** Resolves on SUBSCRIBED; rejects on CHANNEL_ERROR / TIMED_OUT / CLOSED, a client error, or after timeoutMs. */
  async subscribe(timeoutMs = PUSH_TIMEOUT_MS + 2000) {
    let result
    this.ch.subscribe((status, err) => {
      this.statuses.push(status)
      result ??= { status, err }
    })
    const tap = this.rt.tap
    const where = `${this.rt.label}: subscribe ${this.topic} [socket ${tap.url ?? '(none yet)'}]`
    const r = await waitFor(
      () => result ?? (tap.errors.length ? { status: 'CLIENT_ERROR' } : this.rt.closed ? { status: 'ABANDONED (client closed by cleanup)' } : null),
      timeoutMs,
      `${where} -> SUBSCRIBED`,
      () => [tap.errorText(), tap.tail()].filter(Boolean).join('\n'),
    )
    if (r.status !== 'SUBSCRIBED') {
      const detail = [tap.errorText(), tap.tail()].filter(Boolean).join('\n')
      throw new Error(`${where} -> ${r.status}${r.err ? ` (${errText(r.err)})` : ''}${detail ? `\n${detail}` : ''}`)
    }
  }

  send(event, payload) {
    return this.ch.send({ type: 'broadcast', event, payload })
  }

  got(event) {
    return this.received.filter((m) => m.event === event).map((m) => m.payload)
  }

  count(event, payload) {
    return this.got(event).filter((p) => isDeepStrictEqual(p, payload)).length
  }

  state() {
    return this.ch.presenceState()
  }

  metas(key) {
    return this.state()[key] ?? []
  }
}

// ---------------------------------------------------------------------------------------------
// native protocol client (DESIGN section 3): frames {"type","ref","payload"}

class Native {
  constructor(inst, doc, user) {
    this.label = `native(${user}@${inst.name})`
    this.url = `${inst.wsBase}/ws/${encodeURIComponent(doc)}?user=${encodeURIComponent(user)}`
    this.frames = []
    this.raw = []
    this.members = {} // session id -> {user, state}, kept from presence.state / presence.diff
    this.refs = 0
    this.ws = null
  }

  async open(timeoutMs = WAIT_MS) {
    const ws = new WebSocket(this.url)
    this.ws = ws
    liveSockets.add(ws)
    ws.on('close', () => liveSockets.delete(ws))
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? `<binary ${data.length} bytes>` : data.toString('utf8')
      this.raw.push(text)
      let f
      try {
        f = JSON.parse(text)
      } catch {
        f = { type: '<undecodable>', raw: text }
      }
      this.frames.push(f)
      if (f.type === 'presence.state' && f.payload && typeof f.payload === 'object') {
        this.members = { ...f.payload }
      } else if (f.type === 'presence.diff' && f.payload) {
        for (const id of Object.keys(f.payload.leaves ?? {})) delete this.members[id]
        for (const [id, entry] of Object.entries(f.payload.joins ?? {})) this.members[id] = entry
      }
    })
    await bounded(
      new Promise((resolve, reject) => {
        ws.once('open', resolve)
        ws.once('error', (e) => reject(new Error(`${this.label}: connect ${this.url} failed: ${errText(e)}`)))
      }),
      timeoutMs,
      `${this.label}: connect ${this.url}`,
    )
    this.welcome = (await this.waitFrame((f) => f.type === 'welcome', 'welcome')).payload
    await this.waitFrame((f) => f.type === 'presence.state', 'presence.state after welcome')
    return this
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame))
  }

  /** Sends {type, ref, payload} and waits for the `ok` with that ref; an `error` reply throws. */
  async request(type, payload, timeoutMs = PUSH_TIMEOUT_MS) {
    const ref = `e2e-${++this.refs}`
    const frame = { type, ref }
    if (payload !== undefined) frame.payload = payload
    this.send(frame)
    const reply = await this.waitFrame((f) => f.ref === ref && (f.type === 'ok' || f.type === 'error'), `reply to ${type} ref=${ref}`, timeoutMs)
    if (reply.type === 'error') throw new Error(`${this.label}: ${type} refused: ${show(reply.payload)}`)
    return reply
  }

  waitFrame(pred, what, timeoutMs = WAIT_MS) {
    return waitFor(() => this.frames.find(pred), timeoutMs, `${this.label}: ${what}`, () => this.tail())
  }

  memberList() {
    return Object.values(this.members)
  }

  tail(n = 12) {
    return this.raw
      .slice(-n)
      .map((t) => `    ${this.label} S->C ${clip(t)}`)
      .join('\n')
  }

  async close() {
    if (this.ws) await closeWs(this.ws)
  }
}

// ---------------------------------------------------------------------------------------------
// per-test scope: creates clients, closes all of them at the end, adds frames to failures

class Scope {
  constructor() {
    this.rts = []
    this.natives = []
  }

  rt(inst, label, opts) {
    const r = new Rt(inst, label, opts)
    this.rts.push(r)
    return r
  }

  async native(inst, doc, user) {
    const n = new Native(inst, doc, user)
    this.natives.push(n)
    return n.open()
  }

  clientErrors() {
    return this.rts.map((r) => r.tap.errorText()).filter(Boolean).join('\n')
  }

  diag = () => {
    const parts = []
    const errs = this.clientErrors()
    if (errs) parts.push(errs)
    for (const r of this.rts) {
      for (const c of r.chans) if (c.presence) parts.push(`  presenceState() of ${r.label} ${c.topic}: ${clip(show(c.state()), 600)}`)
    }
    for (const n of this.natives) parts.push(`  presence members of ${n.label}: ${clip(show(n.members), 600)}`)
    for (const r of this.rts) if (r.tap.frames.length) parts.push(`  last frames of ${r.label} (${r.tap.url}):\n${r.tap.tail()}`)
    for (const n of this.natives) if (n.raw.length) parts.push(`  last frames of ${n.label} (${n.url}):\n${n.tail()}`)
    return parts.join('\n')
  }

  /** waitFor with frame diagnostics; fails at once if a realtime-js client choked on a frame. */
  waitFor(cond, ms, what) {
    return waitFor(
      () => {
        const errs = this.clientErrors()
        if (errs) throw Object.assign(new Error(errs), { fatal: true })
        return cond()
      },
      ms,
      what,
      this.diag,
    )
  }

  async close() {
    await Promise.all([...this.rts.map((r) => r.close()), ...this.natives.map((n) => n.close())])
  }
}

const allScopes = new Set()

function e2e(name, fn) {
  test(name, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await preflight()
    const s = new Scope()
    allScopes.add(s)
    try {
      await fn(s, t)
    } finally {
      allScopes.delete(s)
      await s.close()
    }
  })
}

after(async () => {
  // a test that timed out may still hold clients: close them, then kill any straggler socket
  await Promise.all([...allScopes].map((s) => s.close().catch(() => {})))
  for (const ws of liveSockets) ws.terminate()
  liveSockets.clear()
})

// ---------------------------------------------------------------------------------------------
// the tests

if (CONFIG_ERROR) {
  test('configuration', () => {
    assert.fail(
      `${CONFIG_ERROR}.\nSet COLLABD_URL_A and COLLABD_URL_B to the http base URLs of two collabd ` +
        'instances sharing one NATS, e.g.\n  COLLABD_URL_A=http://127.0.0.1:8080 COLLABD_URL_B=http://127.0.0.1:8081 node --test e2e.test.mjs',
    )
  })
} else {
  e2e('1. broadcast across instances: vsn 2.0.0 client on A <-> vsn 1.0.0 client on B (ack, self true/false)', async (s) => {
    const a = s.rt(A, 'A(v2)')
    const b = s.rt(B, 'B(v1)', { vsn: '1.0.0' })
    assert.equal(a.client.vsn, '2.0.0')
    assert.equal(b.client.vsn, '1.0.0')

    // --- self: true, ack: true
    const doc = uniq('room-X')
    const config = (key) => ({ broadcast: { self: true, ack: true }, presence: { key } })
    const ca = a.channel(doc, config('user-a'))
    const cb = b.channel(doc, config('user-b'))
    await Promise.all([ca.subscribe(), cb.subscribe()])

    assert.match(a.tap.url, /\/realtime\/v1\/websocket\?.*\bvsn=2\.0\.0\b/)
    assert.match(b.tap.url, /\/realtime\/v1\/websocket\?.*\bvsn=1\.0\.0\b/)
    assert.match(a.tap.url, new RegExp(`[?&]apikey=${encodeURIComponent(APIKEY)}(&|$)`))

    assert.equal(await ca.send('cursor', { x: 1, y: 2 }), 'ok', 'A send with ack resolves ok')
    await s.waitFor(() => cb.count('cursor', { x: 1, y: 2 }) >= 1, WAIT_MS, 'B (v1) receives A\'s cursor {x:1,y:2}')
    await s.waitFor(() => ca.count('cursor', { x: 1, y: 2 }) >= 1, WAIT_MS, 'A receives its own cursor (self:true)')

    assert.equal(await cb.send('cursor', { x: 3, y: 4 }), 'ok', 'B send with ack resolves ok')
    await s.waitFor(() => ca.count('cursor', { x: 3, y: 4 }) >= 1, WAIT_MS, 'A (v2) receives B\'s cursor {x:3,y:4}')
    await s.waitFor(() => cb.count('cursor', { x: 3, y: 4 }) >= 1, WAIT_MS, 'B receives its own cursor (self:true)')

    await sleep(SETTLE_MS)
    assert.equal(ca.count('cursor', { x: 1, y: 2 }), 1, 'A got its own broadcast exactly once')
    assert.equal(cb.count('cursor', { x: 1, y: 2 }), 1, 'B got A\'s broadcast exactly once')
    assert.equal(ca.count('cursor', { x: 3, y: 4 }), 1, 'A got B\'s broadcast exactly once')
    assert.equal(cb.count('cursor', { x: 3, y: 4 }), 1, 'B got its own broadcast exactly once')
    for (const m of [...ca.received, ...cb.received]) assert.equal(m.type, 'broadcast')

    // --- self: false, ack: true (another document: a client holds one channel per topic)
    const doc2 = uniq('room-X-noself')
    const cfg2 = (key) => ({ broadcast: { self: false, ack: true }, presence: { key } })
    const ca2 = a.channel(doc2, cfg2('user-a'))
    const cb2 = b.channel(doc2, cfg2('user-b'))
    await Promise.all([ca2.subscribe(), cb2.subscribe()])

    assert.equal(await ca2.send('cursor', { x: 10 }), 'ok')
    await s.waitFor(() => cb2.count('cursor', { x: 10 }) === 1, WAIT_MS, 'B receives A\'s {x:10} (self:false)')
    assert.equal(await cb2.send('cursor', { x: 11 }), 'ok')
    await s.waitFor(() => ca2.count('cursor', { x: 11 }) === 1, WAIT_MS, 'A receives B\'s {x:11} (self:false)')
    await sleep(SETTLE_MS)
    assert.deepEqual(ca2.got('cursor'), [{ x: 11 }], 'with self:false A does not get its own broadcast')
    assert.deepEqual(cb2.got('cursor'), [{ x: 10 }], 'with self:false B does not get its own broadcast')

    // --- wire forms: vsn 1.0.0 gets JSON objects only; vsn 2.0.0 gets JSON arrays or binary kind 4
    const badB = b.tap.in.filter((f) => f.form !== 'object')
    assert.deepEqual(badB.map((f) => f.raw ?? `binary kind ${f.kind}`), [], 'vsn 1.0.0 client must receive only JSON-object text frames')
    assert.ok(b.tap.out.every((f) => f.form === 'object'), 'the vsn 1.0.0 client sent JSON objects (client side)')
    const badA = a.tap.in.filter((f) => !(f.form === 'array' || (f.form === 'binary' && f.kind === 4)))
    assert.deepEqual(badA.map((f) => f.raw ?? `binary kind ${f.kind}`), [], 'vsn 2.0.0 client must receive JSON arrays or binary kind-4 frames only')

    // --- heartbeats (phoenix topic) are answered on both protocol versions
    await s.waitFor(() => a.heartbeats.includes('ok') && b.heartbeats.includes('ok'), HEARTBEAT_MS + WAIT_MS, 'a phx_reply to a "phoenix" heartbeat on both clients')
    assert.deepEqual(
      [...a.heartbeats, ...b.heartbeats].filter((h) => h === 'timeout' || h === 'error'),
      [],
      'no heartbeat timeouts or errors',
    )
  })

  e2e('2. presence across instances: track, update, untrack, two tabs under one key, leave on removeChannel/disconnect', async (s) => {
    const doc = uniq('room-P')
    const a = s.rt(A, 'A(v2)')
    const b = s.rt(B, 'B(v1)', { vsn: '1.0.0' })
    const cfg = (key) => ({ broadcast: { self: true, ack: true }, presence: { key } })
    const ca = a.channel(doc, cfg('user-a'), { presence: true })
    const cb = b.channel(doc, cfg('user-b'), { presence: true })
    await Promise.all([ca.subscribe(), cb.subscribe()])

    // track
    assert.equal(await ca.ch.track({ name: 'Ann' }), 'ok', 'track resolves ok')
    await s.waitFor(() => cb.joins.some((j) => j.key === 'user-a'), WAIT_MS, 'B gets a presence join for user-a')
    await s.waitFor(() => cb.metas('user-a').length === 1 && cb.metas('user-a')[0].name === 'Ann', WAIT_MS, 'B presenceState: user-a has one meta {name:Ann}')
    await s.waitFor(() => ca.metas('user-a').some((m) => m.name === 'Ann'), WAIT_MS, 'A sees its own presence (as on Supabase)')

    // track again = update: still exactly one meta
    assert.equal(await ca.ch.track({ name: 'Ann2' }), 'ok')
    await s.waitFor(() => cb.metas('user-a').length === 1 && cb.metas('user-a')[0].name === 'Ann2', WAIT_MS, 'B presenceState: user-a has exactly one meta {name:Ann2}')
    await sleep(SETTLE_MS)
    assert.equal(cb.metas('user-a').length, 1, `after update B still has one meta: ${show(cb.metas('user-a'))}`)
    assert.equal(cb.metas('user-a')[0].name, 'Ann2')

    // untrack = leave
    const leavesBefore = cb.leaves.length
    assert.equal(await ca.ch.untrack(), 'ok', 'untrack resolves ok')
    await s.waitFor(() => cb.leaves.slice(leavesBefore).some((l) => l.key === 'user-a'), WAIT_MS, 'B gets a presence leave for user-a')
    await s.waitFor(() => !('user-a' in cb.state()), WAIT_MS, 'key user-a gone from B presenceState')

    // two tabs with the same presence key, one on each instance -> one key, two metas
    const t1 = s.rt(A, 'tab1(A,v2)')
    const t2 = s.rt(B, 'tab2(B,v1)', { vsn: '1.0.0' })
    const ct1 = t1.channel(doc, { presence: { key: 'user-t' } })
    const ct2 = t2.channel(doc, { presence: { key: 'user-t' } })
    await Promise.all([ct1.subscribe(), ct2.subscribe()])
    assert.equal(await ct1.ch.track({ name: 'Tess', tab: 1 }), 'ok')
    assert.equal(await ct2.ch.track({ name: 'Tess', tab: 2 }), 'ok')
    const tabs = (c) => c.metas('user-t').map((m) => m.tab).sort()
    for (const [c, who] of [[ca, 'A'], [cb, 'B']]) {
      await s.waitFor(() => isDeepStrictEqual(tabs(c), [1, 2]), WAIT_MS, `${who} presenceState: user-t has two metas (tab 1 and tab 2)`)
    }
    await sleep(SETTLE_MS)
    assert.deepEqual(Object.keys(cb.state()).sort(), ['user-t'], `B sees exactly one key: ${show(cb.state())}`)
    assert.deepEqual(tabs(cb), [1, 2])

    // tab 2 removes its channel -> only its meta leaves
    const bLeaves = cb.leaves.length
    assert.equal(await t2.client.removeChannel(ct2.ch), 'ok')
    for (const [c, who] of [[ca, 'A'], [cb, 'B']]) {
      await s.waitFor(() => isDeepStrictEqual(tabs(c), [1]), WAIT_MS, `${who}: after tab 2 removeChannel user-t has only tab 1`)
    }
    assert.ok(cb.leaves.slice(bLeaves).some((l) => l.key === 'user-t' && l.leftPresences.some((m) => m.tab === 2)), 'B got a leave of the tab-2 meta')

    // tab 1 disconnects its socket (no phx_leave) -> key gone
    assert.equal(await bounded(t1.client.disconnect(), PUSH_TIMEOUT_MS, 'tab1 disconnect'), 'ok')
    for (const [c, who] of [[ca, 'A'], [cb, 'B']]) {
      await s.waitFor(() => !('user-t' in c.state()), WAIT_MS, `${who}: after tab 1 disconnect user-t is gone`)
    }
  })

  e2e('3. realtime-js (A) and a native client (B) in the same document: broadcast and presence both ways', async (s) => {
    const doc = uniq('room-Y')
    const r = s.rt(A, 'rt(A,v2)')
    const cr = r.channel(doc, { broadcast: { self: false, ack: true }, presence: { key: 'user-rt' } }, { presence: true })
    await cr.subscribe()

    const n = await s.native(B, doc, 'native-1')
    assert.equal(n.welcome?.doc, doc, `welcome.doc: ${show(n.welcome)}`)
    assert.equal(n.welcome?.user, 'native-1', `welcome.user: ${show(n.welcome)}`)
    assert.equal(typeof n.welcome?.id, 'string')

    // the native member is present from the start (state {}): key native-1, one meta
    await s.waitFor(() => cr.metas('native-1').length === 1, WAIT_MS, 'realtime-js presenceState has key native-1 with one meta')
    await n.request('presence.track', { name: 'Nat' })
    await s.waitFor(
      () => cr.metas('native-1').length === 1 && cr.metas('native-1')[0].name === 'Nat',
      WAIT_MS,
      'realtime-js presenceState: native-1 has exactly one meta with name Nat',
    )

    // native -> realtime-js broadcast: event and payload carry over unchanged
    await n.request('broadcast', { event: 'cursor', data: { x: 5 } })
    await s.waitFor(() => cr.count('cursor', { x: 5 }) === 1, WAIT_MS, 'realtime-js receives the native broadcast cursor {x:5}')

    // realtime-js -> native broadcast
    assert.equal(await cr.send('cursor', { x: 7 }), 'ok')
    const got = await s.waitFor(
      () => n.frames.find((f) => f.type === 'broadcast' && f.payload?.event === 'cursor' && isDeepStrictEqual(f.payload?.data, { x: 7 })),
      WAIT_MS,
      'native receives {"type":"broadcast","payload":{"from":...,"event":"cursor","data":{"x":7}}}',
    )
    assert.equal(typeof got.payload.from, 'string', `broadcast.from: ${show(got.payload)}`)

    // realtime-js presence -> native: member with user = presence key, state = the meta
    assert.equal(await cr.ch.track({ name: 'Rita', color: '#e33' }), 'ok')
    const m = await s.waitFor(
      () => n.memberList().find((e) => e.user === 'user-rt' && e.state?.name === 'Rita'),
      WAIT_MS,
      'native presence has a member {user:"user-rt", state:{name:"Rita",...}}',
    )
    assert.equal(m.state.color, '#e33')
    assert.equal(n.memberList().filter((e) => e.user === 'user-rt').length, 1, `one native member for user-rt: ${show(n.members)}`)

    // realtime-js untrack -> leave for the native client
    assert.equal(await cr.ch.untrack(), 'ok')
    await s.waitFor(() => !n.memberList().some((e) => e.user === 'user-rt'), WAIT_MS, 'native presence: user-rt left after untrack')

    // native disconnect -> leave for realtime-js
    const leaves = cr.leaves.length
    await n.close()
    await s.waitFor(() => !('native-1' in cr.state()), WAIT_MS, 'realtime-js presenceState: native-1 gone after the native client closed')
    assert.ok(cr.leaves.slice(leaves).some((l) => l.key === 'native-1'), 'realtime-js got a presence leave for native-1')
  })

  e2e('4. removeChannel: resolves ok, the server replies ok to phx_leave, the channel\'s presence leaves for the others', async (s) => {
    const doc = uniq('room-R')
    const a = s.rt(A, 'leaver(A,v2)')
    const b = s.rt(B, 'observer(B,v2)')
    const ca = a.channel(doc, { presence: { key: 'user-leaver' } })
    const cb = b.channel(doc, { presence: { key: 'user-obs' } }, { presence: true })
    await Promise.all([ca.subscribe(), cb.subscribe()])
    assert.equal(await ca.ch.track({ name: 'Leo' }), 'ok')
    await s.waitFor(() => cb.metas('user-leaver').some((m) => m.name === 'Leo'), WAIT_MS, 'observer sees user-leaver')

    // NB: realtime-js resolves unsubscribe()/removeChannel() with 'ok' locally, before the server
    // answers (Phoenix Channel.leave triggers "ok" itself once the channel is 'leaving'), so the
    // server's reply is checked on the wire.
    const status = await bounded(a.client.removeChannel(ca.ch), PUSH_TIMEOUT_MS, 'removeChannel')
    assert.equal(status, 'ok', 'removeChannel resolves ok')
    assert.ok(!a.client.getChannels().includes(ca.ch), 'channel removed from the client')

    const leave = await s.waitFor(() => a.tap.out.find((f) => f.event === 'phx_leave' && f.topic === ca.topic), 2000, 'client sent phx_leave')
    const reply = await s.waitFor(
      () => a.tap.in.find((f) => f.event === 'phx_reply' && f.topic === ca.topic && f.ref === leave.ref),
      WAIT_MS,
      `server phx_reply to phx_leave ref=${leave.ref}`,
    )
    assert.equal(reply.payload?.status, 'ok', `phx_leave reply: ${reply.raw}`)

    await s.waitFor(() => !('user-leaver' in cb.state()), WAIT_MS, 'observer: user-leaver gone after removeChannel')
    assert.ok(cb.leaves.some((l) => l.key === 'user-leaver' && l.leftPresences.some((m) => m.name === 'Leo')), 'observer got a leave for user-leaver')

    // the socket of A stays usable for other channels after the leave
    const cOther = a.channel(uniq('room-R-after'), { broadcast: { ack: true } })
    await cOther.subscribe()
  })

  e2e('5. REST broadcast POST /realtime/v1/api/broadcast reaches subscribed realtime-js clients', async (s) => {
    const doc = uniq('room-Z')
    const b = s.rt(B, 'sub(B,v2)')
    const cb = b.channel(doc, { broadcast: { self: false } }, { events: ['note'] })
    await cb.subscribe()

    const post = async (inst, messages) => {
      const res = await fetch(inst.restBroadcast, {
        method: 'POST',
        headers: { apikey: APIKEY, 'content-type': 'application/json' },
        body: JSON.stringify({ messages }),
        signal: AbortSignal.timeout(PUSH_TIMEOUT_MS),
      })
      const body = await res.text()
      assert.ok(res.status >= 200 && res.status < 300, `POST ${inst.restBroadcast} -> HTTP ${res.status} ${clip(body)}`)
    }

    // topic without the "realtime:" prefix, as realtime-js itself sends it (channel.subTopic)
    await post(A, [{ topic: doc, event: 'note', payload: { n: 1 } }]) // other instance
    await s.waitFor(() => cb.count('note', { n: 1 }) === 1, WAIT_MS, 'subscriber on B receives note {n:1} posted to A')
    await post(B, [{ topic: doc, event: 'note', payload: { n: 2 } }]) // same instance
    await s.waitFor(() => cb.count('note', { n: 2 }) === 1, WAIT_MS, 'subscriber on B receives note {n:2} posted to B')

    // realtime-js's own REST path: send() on a channel that is not joined falls back to
    // POST <http endpoint>/api/broadcast?apikey=..&vsn=.. with {messages:[{topic, event, payload, private:false}]}
    const r = s.rt(A, 'rest-sender(A)')
    const ch = r.client.channel(doc)
    assert.equal(await bounded(ch.send({ type: 'broadcast', event: 'note', payload: { n: 3 } }), PUSH_TIMEOUT_MS + 1000, 'REST-fallback send'), 'ok', 'realtime-js REST fallback send resolves ok (HTTP 2xx)')
    await s.waitFor(() => cb.count('note', { n: 3 }) === 1, WAIT_MS, 'subscriber on B receives note {n:3} from realtime-js REST fallback')
    assert.equal(r.tap.url, undefined, 'the REST sender never opened a websocket')

    await sleep(SETTLE_MS)
    assert.deepEqual(cb.got('note'), [{ n: 1 }, { n: 2 }, { n: 3 }], 'each note delivered once, in order')
  })

  e2e('6. the /socket/websocket endpoint works like /realtime/v1/websocket', async (s) => {
    const doc = uniq('room-S')
    const a = s.rt(A, 'A(/realtime/v1)')
    const b = s.rt(B, 'B(/socket)', { endpoint: B.socketEndpoint })
    const ca = a.channel(doc, { broadcast: { ack: true } })
    const cb = b.channel(doc, { broadcast: { ack: true } })
    await Promise.all([ca.subscribe(), cb.subscribe()])
    assert.equal(new URL(b.tap.url).pathname.replace(/^.*(\/socket\/websocket)$/, '$1'), '/socket/websocket')
    assert.equal(await ca.send('cursor', { x: 42 }), 'ok')
    await s.waitFor(() => cb.count('cursor', { x: 42 }) === 1, WAIT_MS, 'client on /socket/websocket receives {x:42}')
    assert.equal(await cb.send('cursor', { x: 43 }), 'ok')
    await s.waitFor(() => ca.count('cursor', { x: 43 }) === 1, WAIT_MS, 'client on /realtime/v1/websocket receives {x:43}')
  })
}
