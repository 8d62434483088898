/** Path of the committed asset, server/assets/relay.js. */
export const ASSET: string;
/** A fresh build of the asset's text. */
export function buildAsset(): Promise<string>;
