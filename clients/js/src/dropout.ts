// The voice dropout modal's signal (spec User Story 3): a user who was in a
// voice channel left it or was disconnected — not by moving to another channel,
// and not by a leave or move this client asked for.

import type { RelayClient } from './client.js';

export interface DropoutState {
  droppedOut: boolean;
  /** The voice channel the user dropped out of. */
  channelId: string | null;
  guildId: string | null;
  /** When the dropout was seen (ms since the epoch). */
  since: number | null;
}

export interface DropoutOptions {
  /** A `voice.left` followed this soon by a `voice.joined` of the same user is a move, not a dropout (default 1500 ms). */
  moveGraceMs?: number;
}

const NONE: DropoutState = Object.freeze({ droppedOut: false, channelId: null, guildId: null, since: null });

export class VoiceDropoutWatcher {
  readonly userId: string;
  private readonly _client: RelayClient;
  private readonly _graceMs: number;
  private _state: DropoutState = NONE;
  private _where: { channelId: string; guildId: string } | null = null;
  private _pending: ReturnType<typeof setTimeout> | undefined;
  private readonly _listeners = new Set<(s: DropoutState) => void>();
  private _offs: (() => void)[] = [];

  constructor(client: RelayClient, userId: string, options: DropoutOptions = {}) {
    this._client = client;
    this.userId = userId;
    this._graceMs = options.moveGraceMs ?? 1500;
  }

  getState(): DropoutState { return this._state; }

  subscribe(fn: (s: DropoutState) => void): () => void {
    this._listeners.add(fn);
    return () => { this._listeners.delete(fn); };
  }

  start(): void {
    if (this._offs.length) return;
    const c = this._client;
    this._where = c.voiceChannelOf(this.userId);
    this._offs = [
      c.on('voice.left', (d) => {
        if (d.userId !== this.userId) return;
        const from = d.channelId ? { channelId: d.channelId, guildId: d.guildId } : this._where;
        this._where = null;
        if (!from || c.movedByThisClient(this.userId)) return;
        const since = Date.now();
        clearTimeout(this._pending);
        this._pending = setTimeout(() => {
          this._pending = undefined;
          this._set({ droppedOut: true, channelId: from.channelId, guildId: from.guildId, since });
        }, this._graceMs);
      }),
      c.on('voice.joined', (d) => {
        if (d.userId !== this.userId) return;
        clearTimeout(this._pending); // left then joined: a move
        this._pending = undefined;
        this._where = { channelId: d.channelId, guildId: d.guildId };
        if (this._state.droppedOut) this._set(NONE); // back in voice
      }),
      c.on('voice.snapshot', () => {
        // After a reconnect: gone from every channel while we were away is a dropout too.
        const now = c.voiceChannelOf(this.userId);
        const was = this._where;
        this._where = now;
        if (now) { if (this._state.droppedOut) this._set(NONE); return; }
        if (was && !this._pending && !c.movedByThisClient(this.userId)) {
          this._set({ droppedOut: true, channelId: was.channelId, guildId: was.guildId, since: Date.now() });
        }
      }),
    ];
  }

  stop(): void {
    clearTimeout(this._pending);
    this._pending = undefined;
    for (const off of this._offs.splice(0)) off();
  }

  /** Closes the modal until the next dropout. */
  dismiss(): void {
    if (this._state.droppedOut) this._set(NONE);
  }

  /** Moves the user back into the channel they dropped out of (needs `voice:moderate` and Move Members). */
  rejoin(): Promise<unknown> {
    const { channelId, guildId } = this._state;
    if (!channelId || !guildId) return Promise.resolve(null);
    return this._client.moveMember(guildId, this.userId, channelId);
  }

  private _set(s: DropoutState): void {
    this._state = s;
    for (const fn of [...this._listeners]) fn(s);
  }
}
