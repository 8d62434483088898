// The app's own sign-in (a demo: pick a user). Nothing here knows about relay.
import { createFileRoute, useNavigate } from '@tanstack/react-router';
import { useState } from 'react';

import { getMe, signIn } from '../server/session.functions';
import { USERS } from '../users';

export const Route = createFileRoute('/')({
  loader: () => getMe(),
  component: SignIn,
});

function SignIn() {
  const me = Route.useLoaderData();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  const pick = async (userId: string) => {
    setError(null);
    try {
      await signIn({ data: { userId } });
      await navigate({ to: '/room' });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <main className="signin">
      <h1>Game night</h1>
      <p>Sign in to the app (a demo login: pick who you are).</p>
      {me && <p>Signed in as <b>{me.name}</b>. <a href="/room">Go to the game room</a></p>}
      <ul>
        {USERS.map((u) => (
          <li key={u.id}><button type="button" data-user={u.id} onClick={() => pick(u.id)}>Sign in as {u.name}</button></li>
        ))}
      </ul>
      {error && <p role="alert">{error}</p>}
    </main>
  );
}
