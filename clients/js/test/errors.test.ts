import { describe, expect, it } from 'vitest';
import { RelayClient, RelayError, parseRetryAfter } from '../src/index.js';
import { fakeFetch, options, type FakeReply } from './fakes.js';

const client = (reply: FakeReply | (() => never)) =>
  new RelayClient(options({ autoConnect: false, fetch: fakeFetch(typeof reply === 'function' ? reply : () => reply) }));

async function failure(p: Promise<unknown>): Promise<RelayError> {
  try { await p; } catch (e) { expect(e).toBeInstanceOf(RelayError); return e as RelayError; }
  throw new Error('expected a RelayError');
}

const err = (code: string, message = code, extra: object = {}) => ({ error: { code, message, ...extra } });

describe('command results', () => {
  it('200 → ok with ids', async () => {
    const r = await client({ status: 200, body: { ok: true, requestId: 'r1', traceId: 't1' } }).sendMessage('10', 'hi');
    expect(r).toEqual({ ok: true, requestId: 'r1', traceId: 't1' });
  });
  it('202 → queued', async () => {
    const r = await client({ status: 202, body: { ok: true, queued: true, requestId: 'r1', traceId: 't1' } }).typingStart('10');
    expect(r.queued).toBe(true);
  });
});

describe('RelayError for every §3 status', () => {
  const cases: [number, object | undefined, string][] = [
    [400, { ...err('invalid_request', 'content is too long'), issues: [{ path: ['content'], message: 'at most 2000 characters' }] }, 'invalid_request'],
    [401, err('unauthenticated'), 'unauthenticated'],
    [403, err('forbidden'), 'forbidden'],
    [404, err('not_found'), 'not_found'],
    [405, err('method_not_allowed'), 'method_not_allowed'],
    [413, err('payload_too_large'), 'payload_too_large'],
    [415, err('unsupported_media_type'), 'unsupported_media_type'],
    [502, err('gateway_error', 'Unknown Channel'), 'gateway_error'],
    [503, err('queue_full'), 'queue_full'],
    [504, err('gateway_timeout'), 'gateway_timeout'],
  ];
  for (const [status, body, code] of cases) {
    it(`${status} → ${code}`, async () => {
      const e = await failure(client({ status, body }).sendMessage('10', 'x'));
      expect(e.status).toBe(status);
      expect(e.code).toBe(code);
      expect(e.permission).toBeNull();
      if (status === 400) {
        expect(e.message).toBe('content is too long');
        expect(e.issues).toEqual([{ path: ['content'], message: 'at most 2000 characters' }]);
      } else expect(e.issues).toEqual([]);
    });
    it(`${status} without a JSON body still gets its code`, async () => {
      const e = await failure(client({ status, text: '<html>' }).typingStart('10'));
      expect(e.code).toBe(code);
    });
  }

  it('403 missing_permission carries the permission', async () => {
    const e = await failure(client({ status: 403, body: err('missing_permission', 'needs SEND_MESSAGES', { permission: 'SEND_MESSAGES' }) }).sendMessage('10', 'x'));
    expect(e).toMatchObject({ status: 403, code: 'missing_permission', permission: 'SEND_MESSAGES', message: 'needs SEND_MESSAGES' });
  });

  it('429 takes retryAfterMs from the body', async () => {
    const e = await failure(client({ status: 429, body: { ...err('rate_limited'), retryAfterMs: 1234 }, headers: { 'Retry-After': '2' } }).addReaction('10', '1', '👍'));
    expect(e).toMatchObject({ status: 429, code: 'rate_limited', retryAfterMs: 1234 });
  });

  it('429 falls back to Retry-After (seconds)', async () => {
    const e = await failure(client({ status: 429, body: err('rate_limited'), headers: { 'Retry-After': '3' } }).moveMember('1', '7', null));
    expect(e.retryAfterMs).toBe(3000);
  });

  it('a network failure is status 0, network_error', async () => {
    const e = await failure(client(() => { throw new TypeError('Failed to fetch'); }).muteMember('1', '7', true));
    expect(e).toMatchObject({ status: 0, code: 'network_error' });
    expect(e.message).toContain('Failed to fetch');
  });

  it('history errors map the same way', async () => {
    const e = await failure(client({ status: 403, body: err('missing_permission', 'no', { permission: 'READ_MESSAGE_HISTORY' }) }).fetchMessages('10'));
    expect(e).toMatchObject({ status: 403, code: 'missing_permission', permission: 'READ_MESSAGE_HISTORY' });
  });

  it('parseRetryAfter reads seconds and HTTP dates', () => {
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter('1.5')).toBe(1500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter('soon')).toBeNull();
  });
});

describe('requests', () => {
  it('post JSON with the token as Bearer, same-origin credentials', async () => {
    const f = fakeFetch(() => ({ status: 200, body: { ok: true, requestId: 'r', traceId: 't' } }));
    const c = new RelayClient(options({ autoConnect: false, token: 'jwt', fetch: f }));
    await c.sendMessage('10', 'hi');
    await c.addReaction('10', '1', 'party:55');
    await c.typingStart('10');
    await c.moveMember('1', '7', '20');
    await c.muteMember('1', '7', false);
    expect(f.calls.map((x) => [x.method, x.url, x.body])).toEqual([
      ['POST', '/api/send-message', { channelId: '10', content: 'hi' }],
      ['POST', '/api/add-reaction', { channelId: '10', messageId: '1', emoji: 'party:55' }],
      ['POST', '/api/typing-start', { channelId: '10' }],
      ['POST', '/api/voice/move-member', { guildId: '1', userId: '7', channelId: '20' }],
      ['POST', '/api/voice/mute-member', { guildId: '1', userId: '7', mute: false }],
    ]);
    expect(f.calls[0].headers).toMatchObject({ Authorization: 'Bearer jwt', 'Content-Type': 'application/json' });
    expect(f.calls[0].credentials).toBe('same-origin');
  });

  it('cross-origin: baseUrl prefix and credentials include', async () => {
    const f = fakeFetch(() => ({ status: 200, body: { messages: [] } }));
    const c = new RelayClient(options({ autoConnect: false, baseUrl: 'https://relay.example.com/', fetch: f }));
    await c.fetchMessages('10', { limit: 20, before: '99' });
    expect(f.calls[0].url).toBe('https://relay.example.com/api/channels/10/messages?limit=20&before=99');
    expect(f.calls[0].credentials).toBe('include');
  });

  it('fetchMessages: defaults, anchors, normalised reactions', async () => {
    const f = fakeFetch(() => ({ status: 200, body: { messages: [{ id: '2', channelId: '10', content: 'b' }, { bogus: true }] } }));
    const c = new RelayClient(options({ autoConnect: false, fetch: f }));
    const list = await c.fetchMessages('10');
    expect(f.calls[0].url).toBe('/api/channels/10/messages?limit=50');
    expect(list).toEqual([{ id: '2', channelId: '10', content: 'b', reactions: [] }]);
    await c.fetchMessages('10', { after: '5' });
    await c.fetchMessages('10', { around: '6', limit: 100 });
    expect(f.calls.slice(1).map((x) => x.url)).toEqual(['/api/channels/10/messages?limit=50&after=5', '/api/channels/10/messages?limit=100&around=6']);
    await expect(c.fetchMessages('10', { before: '1', after: '2' } as never)).rejects.toMatchObject({ code: 'invalid_request' });
  });
});
