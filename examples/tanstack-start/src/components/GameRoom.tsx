// The game room, all through @relay/client's hooks: chat for one channel
// (history on open, then live), who is in the room's voice channel, and the
// voice dropout modal. One RelayProvider above: one EventSource on /api/stream.
import {
  can, useAccess, useChannelMessages, useRelay, useRelayEvents, useRelayStatus, useVoiceDropout, useVoiceMembers,
} from '@relay/client/react';
import { RelayError } from '@relay/client';
import { useEffect, useRef, useState } from 'react';
import type { FormEvent } from 'react';

import type { AppUser, ROOM } from '../users';
import { VoiceDropoutModal } from './VoiceDropoutModal';

export function GameRoom({ user, room }: { user: AppUser; room: typeof ROOM }) {
  const status = useRelayStatus();
  return (
    <main className="room">
      <header>
        <h1>Game room</h1>
        <span className="me">Signed in as <b>{user.name}</b></span>
        <span className={`status ${status.stream === 'open' && status.connected ? 'ok' : 'down'}`} data-testid="status">
          {status.stream === 'open' ? (status.connected === false ? 'Discord link down' : 'live') : status.stream}
        </span>
      </header>
      <div className="columns">
        <Chat channelId={room.textChannelId} guildId={room.guildId} />
        <VoiceMembers channelId={room.voiceChannelId} name={room.voiceChannelName} me={user.discordId} />
      </div>
      <Dropout userId={user.discordId} />
    </main>
  );
}

function Chat({ channelId, guildId }: { channelId: string; guildId: string }) {
  const relay = useRelay();
  const { messages, loading, loadingOlder, hasMore, loadOlder, error } = useChannelMessages(channelId);
  const access = useAccess(guildId);
  const mayWrite = can(access, channelId, 'send');
  const [draft, setDraft] = useState('');
  const [sendError, setSendError] = useState<string | null>(null);
  const [typing, setTyping] = useState<string | null>(null);
  const list = useRef<HTMLOListElement>(null);

  useRelayEvents(['typingStart'], [channelId], (ev) => {
    if (ev.type !== 'typingStart') return;
    setTyping(ev.data.userId);
  });
  useEffect(() => {
    if (!typing) return undefined;
    const t = setTimeout(() => setTyping(null), 5000);
    return () => clearTimeout(t);
  }, [typing]);
  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: 'end' });
  }, [messages.length]);

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setSendError(null);
    try {
      await relay.sendMessage(channelId, text);
      setDraft(''); // the message itself arrives on the stream, like everyone else's
    } catch (err) {
      if (err instanceof RelayError && err.code === 'rate_limited') setSendError(`Slow down: try again in ${Math.ceil((err.retryAfterMs ?? 1000) / 1000)} s`);
      else if (err instanceof RelayError && err.code === 'missing_permission') setSendError(`Discord does not let you post here (${err.permission})`);
      else setSendError(err instanceof Error ? err.message : String(err));
    }
  };

  const typingName = typing && messages.findLast((m) => m.author.id === typing)?.author.username;
  return (
    <section className="chat" aria-label="Chat">
      <h2># game-room</h2>
      {hasMore && !loading && (
        <button type="button" className="older" onClick={() => void loadOlder()} disabled={loadingOlder}>
          {loadingOlder ? 'Loading…' : 'Load older messages'}
        </button>
      )}
      {loading && <p className="muted">Loading history…</p>}
      {error != null && <p role="alert">Could not load history: {error instanceof Error ? error.message : String(error)}</p>}
      <ol className="messages" ref={list} data-testid="messages">
        {messages.map((m) => (
          <li key={m.id} data-message-id={m.id}>
            <b className="author">{m.author.username}</b>
            {m.via === 'relay' && <span className="via" title="sent from the web app"> (web)</span>}
            <span className="content">{m.content}</span>
            {m.reactions.length > 0 && (
              <span className="reactions">
                {m.reactions.map((r) => <span key={`${r.emoji.id ?? ''}:${r.emoji.name}`}>{r.emoji.name} {r.count}</span>)}
              </span>
            )}
          </li>
        ))}
      </ol>
      <p className="typing">{typing ? `${typingName || 'Someone'} is typing…` : '\u00a0'}</p>
      <form onSubmit={send}>
        <input
          aria-label="Message"
          value={draft}
          maxLength={2000}
          onChange={(e) => setDraft(e.target.value)}
          placeholder={mayWrite ? 'Message #game-room' : 'You cannot post here'}
          disabled={!mayWrite}
        />
        <button type="submit" disabled={!mayWrite || !draft.trim()}>Send</button>
      </form>
      {sendError && <p role="alert" className="error">{sendError}</p>}
    </section>
  );
}

function VoiceMembers({ channelId, name, me }: { channelId: string; name: string; me: string }) {
  const members = useVoiceMembers(channelId);
  return (
    <section className="voice" aria-label="Voice">
      <h2>🔊 {name}</h2>
      {members.length === 0 ? <p className="muted">Nobody in voice</p> : (
        <ul data-testid="voice-members">
          {members.map((m) => (
            <li key={m.userId} data-user-id={m.userId} className={m.userId === me ? 'me' : undefined}>
              {m.username ?? m.userId}{m.userId === me ? ' (you)' : ''}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Dropout({ userId }: { userId: string }) {
  const dropout = useVoiceDropout(userId);
  const [rejoinError, setRejoinError] = useState<string | null>(null);
  if (!dropout.droppedOut) return null;
  const rejoin = async () => {
    setRejoinError(null);
    try {
      await dropout.rejoin();
    } catch (err) {
      setRejoinError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <VoiceDropoutModal
      channelId={dropout.channelId}
      since={dropout.since}
      onRejoin={rejoin}
      onDismiss={dropout.dismiss}
      error={rejoinError}
    />
  );
}
