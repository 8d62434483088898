/** How long a relay session the app mints lasts (s); the room renews it at half that. */
export const RELAY_TTL_S = 3600;
