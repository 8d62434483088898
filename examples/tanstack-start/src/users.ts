// The app's own user directory. In a real app this is your users table, with
// each user's Discord id linked (for ACCESS=discord relay needs `sub` to be a
// member of the guild). Here: the members of `relay demo`'s simulated guild
// (runtime/src/sim_discord/guild.rs).

export interface AppUser {
  /** The app's id for the user. */
  id: string;
  name: string;
  /** Their Discord user id: the relay session's `sub`. */
  discordId: string;
}

export const USERS: readonly AppUser[] = [
  { id: 'hedy', name: 'Hedy', discordId: '245834868326400001' }, // the guild's owner; the demo's activity leaves her alone
  { id: 'ada', name: 'Ada', discordId: '257068892160000001' },
  { id: 'linus', name: 'Linus', discordId: '218473863053312001' },
  { id: 'grace', name: 'Grace', discordId: '256721603788800001' },
  { id: 'margaret', name: 'Margaret', discordId: '347650759065600001' },
];

/** The game room: one text channel for chat and one voice channel (the demo guild's). */
export const ROOM = {
  guildId: '820674996354416641',
  textChannelId: '820675262545920001', // #game-room
  voiceChannelId: '820675388375040001', // Lobby
  voiceChannelName: 'Lobby',
} as const;

export const userById = (id: string | undefined) => USERS.find((u) => u.id === id);
