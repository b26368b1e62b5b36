// An application of @collabd/client, type-checked with tsc --noEmit (see package.json). The
// lines marked as expected errors at the end must stay errors: the declarations are not too loose.
import { connect, CollabError, TRANSPORTS } from '@collabd/client';
import type { Connection, Member, TransportName, BroadcastMessage } from '@collabd/client';

interface Presence {
  name: string;
  color: string;
}
interface Pointer {
  x: number;
  y: number;
}
interface Reaction {
  emoji: string;
}

const c: Connection<Presence, Pointer, Reaction> = connect<Presence, Pointer, Reaction>({
  doc: 'team-1:board',
  url: 'https://collab.example.com',
  token: async () => (await fetch('/api/collab-token')).text(),
  transports: ['websocket', 'sse'],
  openTimeout: 4000,
  cursorHz: 20,
});

const names = new Map<string, string>();
c.on('presence', (members: Map<string, Member<Presence>>) => {
  names.clear();
  for (const [id, m] of members) names.set(id, m.state.name ?? m.user); // state is {} until tracked
});
c.on('cursor', (id, data) => {
  if (data) console.log(names.get(id), data.x.toFixed(3), data.y.toFixed(3));
});
c.on('broadcast', ({ from, event, data }: BroadcastMessage<Reaction>) => console.log(from, event, data.emoji));
c.on('transport', (name: TransportName) => console.log('trying', name, 'of', TRANSPORTS.join(', ')));
c.on('welcome', ({ id, user, doc }) => console.log(id, user, doc, c.transport));
const off = c.on('close', (code: number, reason: string, retryIn: number | null) => {
  if (retryIn === null) console.log('stopped', code, reason);
  else console.log('retrying in', Math.round(retryIn / 1000), 's');
});
c.on('error', (err: CollabError) => console.warn(err.code, err.message));
off();

export async function demo(): Promise<void> {
  await c.track({ name: 'Ada', color: '#2563eb' });
  c.cursor({ x: 0.42, y: 0.17 });
  c.cursor(null);
  try {
    await c.broadcast('reaction', { emoji: '👍' });
  } catch (err) {
    if (err instanceof CollabError && err.code === 'rate_limited') console.warn('slow down');
  }
  const rtt: number = await c.ping();
  console.log(rtt, c.id, c.connected, c.members.size);
  await c.auth('fresh.jwt.token');
  await c.untrack();
  if (!c.connected) c.reconnect();
  c.close();

  // Untyped use works with the defaults.
  const plain = connect({ doc: 'lobby', transport: 'poll', token: 'static.jwt.token' });
  plain.cursor({ anything: true });
  await plain.broadcast('ping');

  // @ts-expect-error: an unknown event
  c.on('message', () => {});
  // @ts-expect-error: a cursor of the wrong shape
  c.cursor({ x: 'left', y: 0 });
  // @ts-expect-error: a presence state of the wrong shape
  await c.track({ name: 7 });
  // @ts-expect-error: an unknown transport
  connect({ doc: 'x', transport: 'pigeon' });
  // @ts-expect-error: doc is required
  connect({ url: 'https://collab.example.com' });
  // @ts-expect-error: auth takes a token string
  await c.auth(() => 'token');
}
