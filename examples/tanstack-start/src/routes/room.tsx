// The game room. Its loader asks the app's server to mint the relay session
// (an HttpOnly cookie for /api/*); the room itself renders in the browser only,
// where the one EventSource lives.
import { ClientOnly, createFileRoute, redirect } from '@tanstack/react-router';
import { RelayProvider } from '@relay/client/react';
import { useEffect } from 'react';

import { GameRoom } from '../components/GameRoom';
import { RELAY_TTL_S } from '../config';
import { openRelaySession } from '../server/session.functions';

export const Route = createFileRoute('/room')({
  loader: async () => {
    const s = await openRelaySession();
    if (!s.signedIn) throw redirect({ to: '/' });
    return s;
  },
  // The session is minted per visit; never serve it from the router's cache.
  staleTime: 0,
  gcTime: 0,
  component: Room,
});

function Room() {
  const { user, room } = Route.useLoaderData();
  // Renew the relay session before it ends (the cookie is replaced in place;
  // the open stream keeps going, a reconnect uses the new one).
  useEffect(() => {
    const t = setInterval(() => { void openRelaySession(); }, (RELAY_TTL_S / 2) * 1000);
    return () => clearInterval(t);
  }, []);
  return (
    <ClientOnly fallback={<p className="connecting">Connecting…</p>}>
      {/* Same origin: no baseUrl, no token — the browser sends relay_session to /api/*. */}
      <RelayProvider>
        <GameRoom user={user} room={room} />
      </RelayProvider>
    </ClientOnly>
  );
}
