// A session key's lineage: the part of a key that every id minted from one browser's first
// session shares, so that the keys one multi-key operation touches can be kept together (one
// Redis Cluster hash slot). Pure: no I/O.
//
// A store key is `<tag>.<hash>` (session/crypto.ts storeKeyOf): `tag` is 4 base64url characters
// (the session id's first 3 bytes, copied by every rotation and renewal), `hash` the SHA-256 of
// the whole id. A key without that shape (a test's 'a', 'k1') belongs to the empty lineage: all
// such keys form one lineage of their own, so they keep working everywhere, multi-key operations
// included (on a cluster they all share one slot).

/** Length of a lineage tag: base64url of 3 bytes. */
export const LINEAGE_TAG_LENGTH = 4;
const DOT = 0x2e;

/** The lineage tag of a store key: its first 4 characters when they are base64url and a '.' follows, else '' (the empty lineage). */
export function lineageOf(key: string): string {
  return hasTag(key) ? key.slice(0, LINEAGE_TAG_LENGTH) : '';
}

/** The key without its lineage tag: the hash of a `<tag>.<hash>` key; any other key as it is. */
export function untagged(key: string): string {
  return hasTag(key) ? key.slice(LINEAGE_TAG_LENGTH + 1) : key;
}

function hasTag(key: string): boolean {
  if (key.length <= LINEAGE_TAG_LENGTH + 1 || key.charCodeAt(LINEAGE_TAG_LENGTH) !== DOT) return false;
  for (let i = 0; i < LINEAGE_TAG_LENGTH; i++) if (!isBase64url(key.charCodeAt(i))) return false;
  return true;
}

function isBase64url(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
}
