// Type declarations for collab.js, the collabd client (native protocol v1).
// The API is described in docs/client.md; the wire protocol in docs/protocol.md.

/** How a connection talks to the server, in the order tried by default. */
export type TransportName = 'websocket' | 'sse' | 'poll';

/** The transport names, in the order tried by default: WebSocket, Server-Sent Events, long polling. */
export declare const TRANSPORTS: readonly TransportName[];

/** A token, or a function called before every (re)connect that returns one (or a Promise of one). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ConnectOptions {
  /** Document id: 1-128 letters, digits and `_ - : .` (not `.` or `..`). */
  doc: string;
  /** Server base URL (http, https, ws or wss; a path prefix is kept). Default: the page's origin. */
  url?: string | URL;
  /** Display id used as the member's `user` when auth is off. */
  user?: string;
  /**
   * JWT, or a function returning one (called before every connect). With a function, a 4001
   * (token expired or invalid) fetches a fresh token and reconnects once; a fresh token refused
   * at once stops the connection.
   */
  token?: TokenSource;
  /** Transports to try, in order. Default `['websocket', 'sse', 'poll']`. */
  transports?: readonly TransportName[];
  /** Shorthand for `transports: [transport]`. Ignored when `transports` is set. */
  transport?: TransportName;
  /** ms to wait for `welcome` on a transport before trying the next one. Default 5000. */
  openTimeout?: number;
  /** Remember the transport that worked, per server, for the browser session (sessionStorage). Default true. */
  rememberTransport?: boolean;
  /** Maximum cursor frames per second. Default 30. */
  cursorHz?: number;
  /** Reconnect backoff bounds in ms. Defaults 500 and 15000. */
  backoffMin?: number;
  backoffMax?: number;
  /** ms to wait for the reply to a request (track, broadcast, ping, auth). Default 10000. */
  timeout?: number;
}

/** A member of the document. `state` is what it tracked: `{}` until its first track. */
export interface Member<S = Record<string, unknown>> {
  user: string;
  state: Partial<S>;
}

/** The `welcome` payload: this connection's session id, user id and document. */
export interface Welcome {
  id: string;
  user: string;
  doc: string;
}

/** A broadcast from another member (broadcasts are never echoed to their sender). */
export interface BroadcastMessage<B = unknown> {
  /** The sender's session id; `''` for a broadcast posted through the REST API. */
  from: string;
  event: string;
  data: B;
}

/** The events of a connection and their listeners' arguments. */
export interface CollabEvents<S = Record<string, unknown>, C = Record<string, unknown>, B = unknown> {
  /** A transport was chosen for the next attempt (also when falling back). */
  transport: (name: TransportName) => void;
  /** The transport opened (before `welcome`). */
  open: () => void;
  /** Joined: the session is a member from now on. */
  welcome: (welcome: Welcome) => void;
  /** The members changed (a copy; empty on disconnect). Keyed by session id. */
  presence: (members: Map<string, Member<S>>) => void;
  /** A member's cursor moved, or was hidden (`null`, also when it leaves or on disconnect). */
  cursor: (id: string, data: C | null) => void;
  broadcast: (message: BroadcastMessage<B>) => void;
  /** An error frame not tied to a request, a frame the server refused over HTTP, or a failure to get a token. */
  error: (error: CollabError) => void;
  /**
   * The connection closed. `retryIn` is the ms until the next attempt, or `null` when the client
   * stopped for good (close(), 4001, 4003, or an HTTP 400 refusal).
   */
  close: (code: number, reason: string, retryIn: number | null) => void;
}

export interface Connection<S = Record<string, unknown>, C = Record<string, unknown>, B = unknown> {
  /** Session id of the current connection, or `null` while not joined. */
  readonly id: string | null;
  readonly doc: string;
  /** `true` once `welcome` arrived on the current connection. */
  readonly connected: boolean;
  /** A copy of the member map, keyed by session id. */
  readonly members: Map<string, Member<S>>;
  /** The transport in use or being tried; `null` before the first attempt. */
  readonly transport: TransportName | null;
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof CollabEvents<S, C, B>>(event: E, listener: CollabEvents<S, C, B>[E]): () => void;
  off<E extends keyof CollabEvents<S, C, B>>(event: E, listener: CollabEvents<S, C, B>[E]): void;
  /** Sets this member's cursor (`null` hides it): throttled to cursorHz, latest wins, re-sent after a reconnect. */
  cursor(data: C | null): void;
  /** Replaces this member's presence state; resolves on the server's `ok`; re-tracked after every reconnect. */
  track(state: S): Promise<void>;
  /** Leaves presence while staying connected; kept across reconnects like track. */
  untrack(): Promise<void>;
  /** Sends an event to every other member; resolves on `ok`, rejects at once when not connected. */
  broadcast(event: string, data?: B): Promise<void>;
  /** Resolves with the round-trip time in ms. */
  ping(): Promise<number>;
  /** Hands the server a fresh token (when connected) and uses it for later reconnects. */
  auth(token: string): Promise<void>;
  /** Connects now instead of waiting for the scheduled retry (also after a final close code); false if not possible (connected, connecting, or closed by close()). */
  reconnect(): boolean;
  /** Ends the connection for good (close code 1000); no reconnect follows. */
  close(): void;
}

/** Opens a connection to one document and keeps it open. Throws TypeError for invalid options. */
export declare function connect<S = Record<string, unknown>, C = Record<string, unknown>, B = unknown>(
  options: ConnectOptions,
): Connection<S, C, B>;

/** The server's error codes (docs/protocol.md section 10) and the client's own. */
export type CollabErrorCode =
  | 'closed'
  | 'timeout'
  | 'connect'
  | 'bad_json'
  | 'unknown_type'
  | 'bad_payload'
  | 'payload_too_large'
  | 'rate_limited'
  | 'forbidden'
  | 'presence_full'
  | (string & {});

/** The rejection value of requests and the argument of `error` events. */
export declare class CollabError extends Error {
  constructor(code: string, message?: string);
  readonly name: 'CollabError';
  readonly code: CollabErrorCode;
}
