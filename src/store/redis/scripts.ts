// The Lua scripts behind the Redis store's conditional writes, and how each is called. A script
// runs atomically in one round trip, so no other client sees a write half done. They write the
// values laid out in model.ts (a record's type is its first byte: L live, R tombstone, N alias).
// A plain create needs no script: it is one `SET … NX`.
//
// Each script is defined on the client as a command (defineScripts); ioredis sends it by its
// SHA and loads it again after the server forgot it (SCRIPT FLUSH, a restart). The functions
// below are the only callers, so the KEYS/ARGV layout of every script is stated once, here.
//
// Redis Cluster: every key a script touches shares one hash slot (model.ts puts them in their
// lineage's hash tag), so the scripts run there unchanged, with one exception: the family
// revocation reads its members from the set and must declare them (see LUA_REVOKE_FAMILY_DECLARED).
// While a slot migrates, the server refuses a script whose declared keys are not all on the node
// asked (ASK, then TRYAGAIN on the target) before running any of it: a script runs whole on one
// node or not at all, and the client retries only such refusals (cluster.ts).
import type { Cluster, Redis } from 'ioredis';
import type { RenewalAlias, WriteResult } from '../types.js';

// Shared by every script.
const LUA_HELPERS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function tombstone(key, ttl)
  redis.call('SET', key, 'R' .. string.format('%.0f', now_ms() + tonumber(ttl)), 'PX', ttl)
end
-- A key's type byte; '' when it is missing or not a string (a value of another type, which a
-- tombstone then replaces: revocation never fails on what it revokes).
local function type_byte(key)
  local t = redis.pcall('GETRANGE', key, 0, 0)
  if type(t) == 'string' then return t end
  return ''
end
local function live_version(key)
  return string.match(redis.call('GETRANGE', key, 0, 20), '^L(%d+):')
end
`;

/**
 * Compare-and-set of a live record. KEYS[1] key; ARGV[1] expected version; ARGV[2] new value;
 * ARGV[3] ttl. 1 ok, 0 gone (not live), -1 conflict (another version).
 */
const LUA_UPDATE = `${LUA_HELPERS}
local v = live_version(KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`;

/** Revocation. KEYS[1] key; ARGV[1] tombstone ttl. Returns 1 when a live record was revoked. */
const LUA_REVOKE = `${LUA_HELPERS}
local live = 0
if type_byte(KEYS[1]) == 'L' then live = 1 end
tombstone(KEYS[1], ARGV[1])
return live
`;

/**
 * A new id for a live record. KEYS[1] old, KEYS[2] new, KEYS[3] family set; ARGV[1] old
 * version; ARGV[2] old ttl; ARGV[3] new value; ARGV[4] new ttl; ARGV[5] grace deadline ('' for
 * a tombstone); ARGV[6] family; ARGV[7] successor; ARGV[8] family deadline. The old key becomes
 * a tombstone, or an alias that joins the family set with the new key. 1 ok, 0 gone (old not
 * live, or new taken), -1 conflict.
 */
const LUA_ROTATE = `${LUA_HELPERS}
local v = live_version(KEYS[1])
if not v then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if v ~= ARGV[1] then return -1 end
if ARGV[5] == '' then
  tombstone(KEYS[1], ARGV[2])
else
  local own_end = string.format('%.0f', now_ms() + tonumber(ARGV[2]))
  redis.call('SET', KEYS[1], 'N' .. ARGV[5] .. '|' .. own_end .. '|' .. ARGV[6] .. '|' .. ARGV[7], 'PX', ARGV[2])
  local left = redis.call('PTTL', KEYS[3])
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  if left < 0 or now_ms() + left < tonumber(ARGV[8]) then redis.call('PEXPIREAT', KEYS[3], ARGV[8]) end
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
`;

/**
 * Revocation of a whole family. KEYS[1] family set, KEYS[2] key; ARGV[1] tombstone ttl.
 * Tombstones every live member and alias, and the key whatever it holds. Returns how many live
 * records were revoked.
 */
const LUA_REVOKE_FAMILY = `${LUA_HELPERS}
local revoked = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if key ~= KEYS[2] then
    local t = type_byte(key)
    if t == 'L' or t == 'N' then
      tombstone(key, ARGV[1])
      if t == 'L' then revoked = revoked + 1 end
    end
  end
end
redis.call('DEL', KEYS[1])
if type_byte(KEYS[2]) == 'L' then revoked = revoked + 1 end
tombstone(KEYS[2], ARGV[1])
return revoked
`;

/**
 * Revocation of a whole family on Redis Cluster, with its members declared. KEYS[1] family set,
 * KEYS[2] key, KEYS[3..] the members as read just before (SMEMBERS); ARGV[1] tombstone ttl. Does
 * what LUA_REVOKE_FAMILY does, or nothing and returns -1 when the set holds a member that was
 * not declared (a renewal came in between: read the members again).
 *
 * Why declared: on a cluster each command inside a script is routed like a command of its own.
 * While the slot migrates, a member already moved to the target node reads on the source as a
 * "non local key" (the script fails halfway, some members revoked, the key not), and a member
 * not yet moved reads on the target as missing (the script succeeds and leaves that id live).
 * With every key declared, the server runs the script only on a node that holds all of them.
 */
const LUA_REVOKE_FAMILY_DECLARED = `${LUA_HELPERS}
local declared = {}
for i = 3, #KEYS do declared[KEYS[i]] = true end
local members = redis.call('SMEMBERS', KEYS[1])
for _, key in ipairs(members) do
  if not declared[key] then return -1 end
end
local revoked = 0
for _, key in ipairs(members) do
  if key ~= KEYS[2] then
    local t = type_byte(key)
    if t == 'L' or t == 'N' then
      tombstone(key, ARGV[1])
      if t == 'L' then revoked = revoked + 1 end
    end
  end
end
redis.call('DEL', KEYS[1])
if type_byte(KEYS[2]) == 'L' then revoked = revoked + 1 end
tombstone(KEYS[2], ARGV[1])
return revoked
`;

/** An ioredis client (one server, or a cluster) with the scripts defined on it as commands: KEYS first, then ARGV. */
export type ScriptedRedis = (Redis | Cluster) & ScriptCommands;

export interface ScriptCommands {
  ccUpdate(key: string, expectedVersion: number, value: Buffer, ttlMs: number): Promise<number>;
  ccRevoke(key: string, tombstoneTtlMs: number): Promise<number>;
  ccRotate(
    oldKey: string,
    newKey: string,
    familyKey: string,
    oldVersion: number,
    oldTtlMs: number,
    newValue: Buffer,
    newTtlMs: number,
    graceUntil: string,
    family: string,
    successor: string,
    familyDeadline: string,
  ): Promise<number>;
  ccRevokeFamily(familyKey: string, key: string, tombstoneTtlMs: number): Promise<number>;
  /** The number of keys first (2 + the members), then the keys, then the ttl. */
  ccRevokeFamilyDeclared(numberOfKeys: number, ...keysThenTtl: Array<string | number>): Promise<number>;
}

/** Defines the scripts on a new client. */
export function defineScripts(client: Redis | Cluster): ScriptedRedis {
  client.defineCommand('ccUpdate', { numberOfKeys: 1, lua: LUA_UPDATE });
  client.defineCommand('ccRevoke', { numberOfKeys: 1, lua: LUA_REVOKE });
  client.defineCommand('ccRotate', { numberOfKeys: 3, lua: LUA_ROTATE });
  client.defineCommand('ccRevokeFamily', { numberOfKeys: 2, lua: LUA_REVOKE_FAMILY });
  client.defineCommand('ccRevokeFamilyDeclared', { lua: LUA_REVOKE_FAMILY_DECLARED });
  return client as ScriptedRedis;
}

/** Writes `value` at `key` when it holds a live record at `expectedVersion`. */
export async function update(redis: ScriptedRedis, key: string, expectedVersion: number, value: Buffer, ttlMs: number): Promise<WriteResult> {
  return writeResult(await redis.ccUpdate(key, expectedVersion, value, ttlMs));
}

/** Leaves a tombstone at `key`, whatever it holds; true when that was a live record. */
export async function revoke(redis: ScriptedRedis, key: string, tombstoneTtlMs: number): Promise<boolean> {
  return (await redis.ccRevoke(key, tombstoneTtlMs)) === 1;
}

export interface RotateArgs {
  oldKey: string;
  oldVersion: number;
  /** How long the old key's tombstone (or alias) lives. */
  oldTtlMs: number;
  newKey: string;
  newValue: Buffer;
  newTtlMs: number;
  /** The family set the alias joins (with an alias); ignored without one. */
  familyKey: string;
  /** Leave an alias instead of a tombstone. */
  alias: RenewalAlias | undefined;
}

/** Moves a live record to a new key, ending the old one (see LUA_ROTATE). */
export async function rotate(redis: ScriptedRedis, r: RotateArgs): Promise<WriteResult> {
  const { alias } = r;
  const code = await redis.ccRotate(
    r.oldKey,
    r.newKey,
    r.familyKey,
    r.oldVersion,
    r.oldTtlMs,
    r.newValue,
    r.newTtlMs,
    alias ? String(alias.graceUntil) : '',
    alias?.family ?? '',
    alias?.successor ?? '',
    alias ? String(alias.familyDeadline) : '',
  );
  return writeResult(code);
}

/** Tombstones every member of a family and `key`; how many live records that revoked. */
export function revokeFamily(redis: ScriptedRedis, familyKey: string, key: string, tombstoneTtlMs: number): Promise<number> {
  return redis.ccRevokeFamily(familyKey, key, tombstoneTtlMs);
}

/** Reads of the members before revokeFamilyDeclared gives up (each retry means a renewal landed in between). */
const MAX_FAMILY_READS = 8;

/**
 * revokeFamily on Redis Cluster (see LUA_REVOKE_FAMILY_DECLARED): reads the members, then
 * revokes with them declared, again while renewals keep adding members in between. Both steps
 * touch one slot. The first step writes nothing, so stopping between them changes nothing.
 */
export async function revokeFamilyDeclared(redis: ScriptedRedis, familyKey: string, key: string, tombstoneTtlMs: number): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const members = await redis.smembers(familyKey);
    const revoked = await redis.ccRevokeFamilyDeclared(2 + members.length, familyKey, key, ...members, tombstoneTtlMs);
    if (revoked !== -1) return revoked;
    if (attempt >= MAX_FAMILY_READS) throw new Error(`family revocation: the family changed ${MAX_FAMILY_READS} times while it was read`);
  }
}

function writeResult(code: number): WriteResult {
  return code === 1 ? 'ok' : code === -1 ? 'conflict' : 'gone';
}
