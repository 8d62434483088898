// A scriptable EventSource and fetch, so the client runs without a network.
import type { RelayOptions } from '../src/index.js';

type Listener = (e: unknown) => void;

export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  readonly url: string;
  readonly withCredentials: boolean;
  readyState = 0;
  closed = false;
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(url: string, init?: { withCredentials?: boolean }) {
    this.url = url;
    this.withCredentials = !!init?.withCredentials;
    FakeEventSource.instances.push(this);
  }

  static reset() { FakeEventSource.instances = []; }
  static get last(): FakeEventSource { return FakeEventSource.instances[FakeEventSource.instances.length - 1]; }
  static get live(): FakeEventSource[] { return FakeEventSource.instances.filter((e) => !e.closed); }

  addEventListener(type: string, fn: Listener) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
  }
  removeEventListener(type: string, fn: Listener) { this.listeners.get(type)?.delete(fn); }
  close() { this.closed = true; this.readyState = 2; }

  get query(): URLSearchParams { return new URL(this.url, 'http://x').searchParams; }

  private fire(type: string, e: unknown) { for (const fn of [...(this.listeners.get(type) ?? [])]) fn(e); }

  open() { this.readyState = 1; this.fire('open', { type: 'open' }); }

  /** An SSE frame: `event: type`, `id:` when given, `data:` an SseEvent envelope around `data`. */
  send(type: string, data: unknown, id = '', meta: object = { traceId: 't-' + type, sentAt: '2025-01-01T00:00:00.000Z' }) {
    this.raw(type, JSON.stringify({ version: '1.0', event: type, data, meta }), id);
  }

  raw(type: string, text: string, id = '') {
    this.fire(type, { type, data: text, lastEventId: id });
  }

  /** A connection failure; `closed`: the browser gave up (HTTP error). */
  fail(closed = false) {
    this.readyState = closed ? 2 : 0;
    this.fire('error', { type: 'error' });
  }
}

export interface FakeCall { url: string; method: string; headers: Record<string, string>; body: unknown; credentials?: string }
export type Route = (call: FakeCall) => FakeReply | Promise<FakeReply>;
export interface FakeReply { status: number; body?: unknown; headers?: Record<string, string>; text?: string }

/** A fetch that answers from `route` and records every call. */
export function fakeFetch(route: Route) {
  const calls: FakeCall[] = [];
  const fn = async (url: string, init: RequestInit = {}) => {
    const call: FakeCall = {
      url, method: init.method ?? 'GET', headers: (init.headers ?? {}) as Record<string, string>,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined, credentials: init.credentials,
    };
    calls.push(call);
    const r = await route(call);
    const headers = new Headers(r.headers ?? {});
    return {
      status: r.status,
      statusText: '',
      headers,
      ok: r.status >= 200 && r.status < 300,
      json: async () => {
        if (r.text !== undefined) return JSON.parse(r.text);
        if (r.body === undefined) throw new SyntaxError('no body');
        return r.body;
      },
    } as unknown as Response;
  };
  return Object.assign(fn as unknown as typeof fetch, { calls });
}

/** A fetch whose answers the test releases by hand. */
export function deferredFetch() {
  const pending: { call: FakeCall; resolve: (r: FakeReply) => void }[] = [];
  const f = fakeFetch((call) => new Promise<FakeReply>((resolve) => pending.push({ call, resolve })));
  return Object.assign(f, { pending });
}

export function memoryStorage(init: Record<string, string> = {}) {
  const m = new Map(Object.entries(init));
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v), map: m };
}

export function options(extra: Partial<RelayOptions> = {}): RelayOptions {
  return { EventSource: FakeEventSource as unknown as typeof EventSource, storage: memoryStorage(), fetch: fakeFetch(() => ({ status: 200, body: { messages: [] } })), ...extra };
}

export const flush = () => new Promise<void>((r) => setTimeout(r, 0));

let nextId = 1000;
/** A history message (§9 shape). */
export function msg(id: string | number, channelId = '10', content = 'm' + id) {
  return {
    id: String(id), channelId, guildId: '1', content, timestamp: '2025-01-01T00:00:00.000Z',
    author: { id: '7', username: 'ana', avatar: null, bot: false }, reactions: [] as { emoji: { id: string | null; name: string | null }; count: number }[],
  };
}
export const freshId = () => String(nextId++);
