// Server-only (the .server suffix keeps it out of the browser bundle; TanStack
// Start refuses to build if client code imports it). SESSION_SECRET and the
// app's own key live here and never leave the server.
import { getCookie } from '@tanstack/react-start/server';
import { SignJWT, jwtVerify } from 'jose';
import { randomBytes } from 'node:crypto';

import { RELAY_TTL_S } from '../config';
import { userById } from '../users';
import type { AppUser } from '../users';

/** The app's own session cookie (a JWT under APP_SECRET): who is signed in to the app. */
export const APP_COOKIE = 'app_session';
/** relay's session cookie (CONTRACT.md §2): what the edge reads on /api/*. */
export const RELAY_COOKIE = 'relay_session';
export const APP_TTL_S = 12 * 3600;

let appKeyBytes: Uint8Array | undefined;
/** The app's own key; unset APP_SECRET: a random one per process (sign-ins end on restart). */
function appKey(): Uint8Array {
  appKeyBytes ??= new TextEncoder().encode(process.env.APP_SECRET || randomBytes(32).toString('hex'));
  return appKeyBytes;
}

/** relay's key: the edge's SESSION_SECRET. */
function relayKey(): Uint8Array {
  const secret = process.env.SESSION_SECRET;
  if (!secret) throw new Error('SESSION_SECRET is not set: the app cannot mint relay sessions (see the README)');
  return new TextEncoder().encode(secret);
}

export function cookieOptions(path: string, maxAge: number) {
  return { httpOnly: true, sameSite: 'lax' as const, secure: process.env.COOKIE_SECURE === 'true', path, maxAge };
}

/** The app's session token for `user`. */
export function appSessionToken(user: AppUser): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' })
    .setSubject(user.id).setIssuedAt().setExpirationTime(`${APP_TTL_S}s`).sign(appKey());
}

/** Who the request's app session says is signed in. */
export async function currentUser(): Promise<AppUser | null> {
  const token = getCookie(APP_COOKIE);
  if (!token) return null;
  try {
    const { payload } = await jwtVerify(token, appKey(), { algorithms: ['HS256'] });
    return userById(payload.sub) ?? null;
  } catch {
    return null;
  }
}

/**
 * A relay session for `user` (CONTRACT.md §2): HS256 under SESSION_SECRET,
 * `sub` = their Discord user id (relay demo runs ACCESS=discord), `name`,
 * `roles`, `exp`.
 */
export async function relaySessionToken(user: AppUser): Promise<{ token: string; expiresAt: number }> {
  const expiresAt = Math.floor(Date.now() / 1000) + RELAY_TTL_S;
  const token = await new SignJWT({ name: user.name, roles: ['chat:write', 'voice:moderate'] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user.discordId)
    .setExpirationTime(expiresAt)
    .sign(relayKey());
  return { token, expiresAt };
}
