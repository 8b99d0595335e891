// A Redis Cluster as the store's connection: ioredis' Cluster client, set up the fail-fast way
// of connection.ts, and kept from ever sending a command again once the store gave up on it.
//
// How ioredis 5.9 runs a command on a cluster (read in its cluster/index.js, Redis.js), and what
// each option below chooses:
// - It sends the command to the master of the key's slot. A MOVED answer (the slot has a new
//   owner) updates its slot table, refreshes it from CLUSTER SLOTS and sends again; ASK (the slot
//   is migrating, the key is elsewhere already) sends once to the target, after ASKING; TRYAGAIN
//   (a multi-key command whose keys are split between source and target mid-migration) and
//   CLUSTERDOWN wait a delay and send again. Each of these answers means the server did NOT run
//   the command, so sending again cannot apply a write twice. Every resend counts against
//   maxRedirections.
// - A command cut off by a dropped node connection fails with "Connection is closed." and,
//   by default (retryDelayOnFailover), is sent again to another node: it may have run already, so
//   a rotate or create would be applied twice. retryDelayOnFailover: 0 turns that off: such a
//   command fails (503), as on one server.
// - The per-command timeout (commandTimeout, on the node connections) starts at the first send
//   and covers every redirection; when it fires the command fails, but ioredis keeps it: a resend
//   already queued (TRYAGAIN's delay, a node's offline queue) or a redirection answered later
//   would still send it, and a write the caller was told had failed would apply later. The guard
//   below (neverResendAbandoned) drops such a command instead.
// - Node connections always have an offline queue and no reconnect of their own (ioredis forces
//   both): a node connection is made on first use and dropped when it fails; the slot table
//   (refreshed on MOVED and every SLOTS_REFRESH_INTERVAL_MS) says where to connect next. Their
//   offline queue lasts only while one connection is being made, and the command timeout bounds it.
import { AsyncLocalStorage } from 'node:async_hooks';
import { Cluster, type ClusterOptions, type Redis } from 'ioredis';
import { defineScripts, type ScriptedRedis } from './scripts.js';
import type { RedisNode } from './target.js';

/** Longest pause between attempts to reach the cluster again after every node was lost. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** How often the slot table is read again even without a MOVED (failovers, new nodes). */
const SLOTS_REFRESH_INTERVAL_MS = 5000;
/** Redirections any command may take on top of its TRYAGAIN retries (ioredis' default). */
const BASE_REDIRECTIONS = 16;
/** A TRYAGAIN costs up to this many redirections: the retry goes to a random master, which may answer MOVED, then ASK. */
const REDIRECTIONS_PER_TRYAGAIN = 3;

export interface ClusterTarget {
  nodes: RedisNode[];
  username?: string;
  password?: string;
}

/**
 * The parts of ioredis 5.9 used beyond its typed API here (see also connection.ts); the cluster
 * tests notice when they move:
 * - `Cluster#sendCommand(command, stream, node)` and `Redis#sendCommand(command, stream)`: every
 *   command goes through the first once, and every send to a node (first send, redirection,
 *   retry, a node's offline queue) through the second.
 * - A Command's `promise` (what the caller awaits; it rejects when the command finally failed)
 *   and `reject`, which the cluster replaces with its redirection handler on the first send.
 * - A node connection's `socketTimeoutTimer` (clearSocketTimer).
 */
interface CommandInternals {
  promise: Promise<unknown>;
  reject(err: Error): void;
}
type SendCommand = (command: CommandInternals, ...rest: unknown[]) => unknown;

/**
 * A new Cluster client for `target`, the store's scripts defined on it, not connected yet
 * (connection.ts waitReady connects). `timeout` is the per-command timeout, in ms.
 * `onDropped` is told each time a command the store had given up on was not sent again, or a
 * late answer to it (a redirection) was not followed.
 */
export function createClusterConnection(
  target: ClusterTarget,
  timeout: number,
  connectTimeout: number,
  onDropped: () => void = () => {},
  name = 'coatcheck',
): ScriptedRedis {
  // A TRYAGAIN lasts until the slot's migration moved the command's keys: usually milliseconds.
  // Retried every tenth of the timeout, a command gets about ten tries before it times out.
  const tryAgainDelay = Math.min(100, Math.max(10, Math.round(timeout / 10)));
  const options: ClusterOptions = {
    lazyConnect: true,
    // No queue while the cluster is not ready (connecting, every node lost): a command fails at
    // once, as on one server, instead of waiting for a recovery that may take long.
    enableOfflineQueue: false,
    // Ready only once CLUSTER INFO says the cluster is not failed.
    enableReadyCheck: true,
    // Masters only: a replica may lag, and a revoked id read from it could still look live.
    scaleReads: 'master',
    // Enough redirections for TRYAGAIN retries until the command's own timeout ends it.
    maxRedirections: BASE_REDIRECTIONS + REDIRECTIONS_PER_TRYAGAIN * Math.ceil(timeout / tryAgainDelay),
    retryDelayOnMoved: 0,
    retryDelayOnTryAgain: tryAgainDelay,
    // A cluster that is down (a master lost, no failover yet) is asked again, with a fresh slot
    // table, until the command times out; the command did not run.
    retryDelayOnClusterDown: Math.min(100, Math.max(10, Math.round(timeout / 4))),
    // Never: see the top of this file.
    retryDelayOnFailover: 0,
    slotsRefreshTimeout: Math.min(1000, connectTimeout),
    slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
    // Every node lost: try the seed nodes again, in the background, backoff capped at 1s.
    clusterRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), MAX_RECONNECT_DELAY_MS),
    // Auto-pipelining would batch commands per node, but a pipeline with one redirected command
    // fails the lot when another of its writes ran; each command goes alone.
    enableAutoPipelining: false,
    // The node connections, as connection.ts sets up one server (ioredis forces their offline
    // queue on and their own reconnects off; see the top of this file).
    redisOptions: {
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: timeout,
      connectTimeout,
      socketTimeout: Math.max(2000, timeout * 4),
      disconnectTimeout: 100,
      connectionName: name,
      disableClientInfo: true,
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
    },
  };
  const cluster = new Cluster(
    target.nodes.map((n) => ({ host: n.host, port: n.port })),
    options,
  );
  neverResendAbandoned(cluster, onDropped);
  recordNodes(cluster);
  cluster.on('+node', (node: Redis) => node.once('end', () => clearSocketTimer(node)));
  return defineScripts(cluster);
}

/**
 * ioredis 5.9 keeps a connection's socket-timeout timer (private `socketTimeoutTimer`, see
 * connection.ts) when the socket goes away without an answer. The cluster drops node
 * connections by itself (a failed node, a slot table without it): cleared when each one ends,
 * or the timer would outlive it by up to socketTimeout, and the client by as much.
 */
function clearSocketTimer(node: Redis): void {
  const io = node as unknown as { socketTimeoutTimer?: ReturnType<typeof setTimeout> };
  if (io.socketTimeoutTimer !== undefined) {
    clearTimeout(io.socketTimeoutTimer);
    io.socketTimeoutTimer = undefined;
  }
}

/**
 * Once a command's promise has rejected (its timeout fired, or it failed for good), it is never
 * sent to a node again, and answers that still come for it (a late MOVED, ASK or TRYAGAIN) are
 * not followed. Without this, ioredis sends a timed-out command when its TRYAGAIN delay ends, or
 * follows the redirection a slow node answered after the timeout: a write the store reported as
 * failed (a rotate, say) would apply afterwards. What stays uncertain is what is uncertain on one
 * server too: a command that was on the wire when its timeout fired may have run.
 */
function neverResendAbandoned(cluster: Cluster, onDropped: () => void): void {
  const abandoned = new WeakSet<CommandInternals>();
  const watched = new WeakSet<CommandInternals>();
  const clusterSend = cluster.sendCommand.bind(cluster) as unknown as SendCommand;
  (cluster as unknown as { sendCommand: SendCommand }).sendCommand = (command, ...rest) => {
    const result = clusterSend(command, ...rest);
    if (!watched.has(command)) {
      watched.add(command);
      // After the first send, `reject` is the cluster's redirection handler: it is not called
      // for a command given up on, so no late answer sends it again (nor an ASKING before it).
      const follow = command.reject;
      command.reject = (err) => {
        if (!abandoned.has(command)) follow.call(command, err);
        else onDropped();
      };
      command.promise.then(undefined, () => abandoned.add(command));
    }
    return result;
  };
  // Every node connection is made through the pool, which announces it before its first use.
  cluster.on('+node', (node: Redis) => {
    const nodeSend = node.sendCommand.bind(node) as unknown as SendCommand;
    (node as unknown as { sendCommand: SendCommand }).sendCommand = (command, ...rest) => {
      if (abandoned.has(command)) {
        onDropped();
        return command.promise;
      }
      return nodeSend(command, ...rest);
    };
  });
}

/** The node connections that the commands of one runOnNodes() call were last sent to. */
class NodeTrail {
  readonly lastSentTo = new Map<CommandInternals, Redis>();
}

const trails = new AsyncLocalStorage<NodeTrail>();
const trailOf = new WeakMap<CommandInternals, NodeTrail>();

/**
 * Runs `fn`, which sends commands through `cluster`, and says which node connections ran them:
 * for each command, the node it was sent to last (after MOVED or ASK, the node that answered).
 * A WAIT that is to count a write must go to that very connection (replicated-writes.ts).
 *
 * Which command belongs to which call is carried by AsyncLocalStorage, so that a command sent
 * later on the call's behalf (ioredis sends a script again after NOSCRIPT, from a promise
 * handler) is counted too. Only commands sent through the cluster are recorded: an ASKING or
 * a slot-table refresh on a node connection is not the call's.
 */
export async function runOnNodes<T>(cluster: ScriptedRedis, fn: (redis: ScriptedRedis) => Promise<T>): Promise<{ value: T; nodes: Redis[] }> {
  const trail = new NodeTrail();
  const value = await trails.run(trail, () => fn(cluster));
  return { value, nodes: [...new Set(trail.lastSentTo.values())] };
}

/** Records, for runOnNodes(), the node each command of a call was last sent to. */
function recordNodes(cluster: Cluster): void {
  const clusterSend = cluster.sendCommand.bind(cluster) as unknown as SendCommand;
  (cluster as unknown as { sendCommand: SendCommand }).sendCommand = (command, ...rest) => {
    const trail = trails.getStore();
    if (trail !== undefined && !trailOf.has(command)) trailOf.set(command, trail);
    return clusterSend(command, ...rest);
  };
  cluster.on('+node', (node: Redis) => {
    const nodeSend = node.sendCommand.bind(node) as unknown as SendCommand;
    (node as unknown as { sendCommand: SendCommand }).sendCommand = (command, ...rest) => {
      trailOf.get(command)?.lastSentTo.set(command, node);
      return nodeSend(command, ...rest);
    };
  });
}
