// The app's server functions: its own (demo) sign-in, and minting the relay
// session for the signed-in user. The handlers run on the server only; the
// browser gets an RPC stub. The relay session goes out as an HttpOnly cookie
// scoped to /api/* (which this app's server proxies to relay's edge), so page
// script never sees it.
import { createServerFn } from '@tanstack/react-start';
import { deleteCookie, setCookie } from '@tanstack/react-start/server';

import { RELAY_TTL_S } from '../config';
import { ROOM, USERS, userById } from '../users';
import {
  APP_COOKIE, APP_TTL_S, RELAY_COOKIE, appSessionToken, cookieOptions, currentUser, relaySessionToken,
} from './session.server';

/** Who is signed in to the app (null: nobody). */
export const getMe = createServerFn({ method: 'GET' }).handler(() => currentUser());

/** The app's demo sign-in: pick a user. A real app checks a password or an identity provider here. */
export const signIn = createServerFn({ method: 'POST' })
  .validator((input: unknown) => {
    const id = (input as { userId?: unknown } | null)?.userId;
    if (typeof id !== 'string' || !userById(id)) {
      throw new Error(`unknown user; one of ${USERS.map((u) => u.id).join(', ')}`);
    }
    return { userId: id };
  })
  .handler(async ({ data }) => {
    const user = userById(data.userId)!;
    setCookie(APP_COOKIE, await appSessionToken(user), cookieOptions('/', APP_TTL_S));
    return user;
  });

/** Signs out of the app and of relay. */
export const signOut = createServerFn({ method: 'POST' }).handler(() => {
  deleteCookie(APP_COOKIE, { path: '/' });
  deleteCookie(RELAY_COOKIE, { path: '/api' });
  return null;
});

/**
 * Mints the relay session for the signed-in user and sets it as relay's
 * `relay_session` cookie for /api/*. Returns what the page needs — never the
 * token.
 */
export const openRelaySession = createServerFn({ method: 'POST' }).handler(async () => {
  const user = await currentUser();
  if (!user) return { signedIn: false as const };
  const { token, expiresAt } = await relaySessionToken(user);
  setCookie(RELAY_COOKIE, token, cookieOptions('/api', RELAY_TTL_S));
  return { signedIn: true as const, user, room: ROOM, expiresAt };
});
