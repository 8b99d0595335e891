// The argument rules of the SessionStore contract, shared by every store, so that code tested
// against the memory store cannot fail on Redis (which writes these values into scripts and
// `|`-separated aliases) or on Redis Cluster (where the keys of one script must share a hash
// slot: rotate's two keys must share a lineage, lineage.ts). Each throws a TypeError or
// RangeError naming the argument; nothing is written when one throws.
//
// revokeFamily's members share its key's lineage by construction: every store keeps a family's
// index per lineage (the Redis layout puts the key's tag in the family key on a cluster), and
// only rotate(), whose keys share a lineage, adds members to it.
import { lineageOf } from './lineage.js';
import type { RenewalAlias } from './types.js';

export function checkCreate(data: Buffer, ttlMs: number): void {
  checkTtl(ttlMs, 'ttlMs');
  checkData(data);
}

export function checkUpdate(version: number, data: Buffer, ttlMs: number): void {
  checkVersion(version);
  checkData(data);
  checkTtl(ttlMs, 'ttlMs');
}

export function checkRotate(
  oldKey: string,
  oldVersion: number,
  oldTombstoneTtlMs: number,
  newKey: string,
  data: Buffer,
  ttlMs: number,
  alias: RenewalAlias | undefined,
): void {
  // The tags are not named: a tag is 3 bytes of a session id.
  if (lineageOf(oldKey) !== lineageOf(newKey)) throw new RangeError("rotate: newKey must share oldKey's lineage (store/lineage.ts)");
  checkVersion(oldVersion);
  checkTtl(oldTombstoneTtlMs, 'oldTombstoneTtlMs');
  checkTtl(ttlMs, 'ttlMs');
  checkData(data);
  if (alias) {
    if (!Number.isFinite(alias.graceUntil)) throw new RangeError(`alias.graceUntil must be a finite number of ms, got ${alias.graceUntil}`);
    // Redis takes it as an integer (PEXPIREAT): anything else would fail a script after its first writes.
    if (!Number.isSafeInteger(alias.familyDeadline)) {
      throw new RangeError(`alias.familyDeadline must be an integer number of ms since the epoch, got ${alias.familyDeadline}`);
    }
    checkToken(alias.family, 'alias.family');
    checkToken(alias.successor, 'alias.successor');
  }
}

export function checkTtl(ms: number, name: string): void {
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new RangeError(`${name} must be a positive integer number of ms, got ${ms}`);
}

function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError(`version must be a positive integer, got ${version}`);
}

function checkData(data: Buffer): void {
  if (!Buffer.isBuffer(data) || data.length === 0) throw new TypeError('record data must be a non-empty Buffer');
}

/** Family ids and successors are written between `|` separators: base64url-like tokens only. */
function checkToken(value: string, name: string): void {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) throw new TypeError(`${name} must be a non-empty base64url token`);
}
