// The voice dropout modal of the spec (User Story 3): shown when the signed-in
// user was in a voice channel and left it or was disconnected (not a move).
import { useEffect, useRef } from 'react';

import { ROOM } from '../users';

export function VoiceDropoutModal(props: {
  channelId: string | null;
  since: number | null;
  onRejoin: () => void;
  onDismiss: () => void;
  error: string | null;
}) {
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => { first.current?.focus(); }, []);
  const where = props.channelId === ROOM.voiceChannelId ? ROOM.voiceChannelName : 'voice';
  const at = props.since ? new Date(props.since).toLocaleTimeString() : '';
  return (
    <div className="backdrop">
      <div role="dialog" aria-modal="true" aria-labelledby="dropout-title" className="modal" data-testid="voice-dropout">
        <h2 id="dropout-title">You dropped out of {where}</h2>
        <p>You left the voice channel or were disconnected{at && ` at ${at}`}.</p>
        {props.error && (
          <p role="alert" className="error">
            Could not rejoin: {props.error}. Discord can only move members who are connected to voice; {' '}
            <a href={`https://discord.com/channels/${ROOM.guildId}/${props.channelId ?? ROOM.voiceChannelId}`} target="_blank" rel="noreferrer">open the channel in Discord</a>.
          </p>
        )}
        <div className="actions">
          <button type="button" ref={first} onClick={props.onRejoin}>Rejoin</button>
          <button type="button" onClick={props.onDismiss}>Dismiss</button>
        </div>
      </div>
    </div>
  );
}
