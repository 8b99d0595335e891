// Loads batched by event-loop turn: every load asked for during one turn (the requests parsed
// from all the sockets that were readable) goes out as one `MGET` when the turn ends, instead of
// one `GET` each: one write and one reply to read for the lot, which under load saves a system
// call or two per request. A load alone is a plain `GET`. (A batch does not cork the socket as
// the other commands do, client.ts: it is one command already, sent as the turn ends.)
//
// On Redis Cluster a multi-key command must stay within one hash slot, so the loads of a turn
// go out as one command per slot (a GET for a slot asked once, an MGET for several keys of one
// slot); the cluster client sends each to the node that holds its slot.
import type { Redis } from 'ioredis';
import { StoreUnavailableError } from '../../errors.js';

/** Most loads sent in one MGET; more in one turn start another. */
const MAX_LOAD_BATCH = 256;

/**
 * What a load finds at a key that holds a value of another type than a string. Only a GET can
 * tell (it fails with WRONGTYPE); an MGET reads such a key as null.
 */
export const WRONG_TYPE = Symbol('WRONGTYPE');
/** The value at a key: null when there is none. */
export type Fetched = Buffer | null | typeof WRONG_TYPE;

export interface LoadTarget {
  /** The connection to send on; throws StoreUnavailableError when there is none (not started, closed). */
  ready(): Pick<Redis, 'getBuffer' | 'mgetBuffer'>;
  /** A failed load as the store reports it. */
  unavailable(op: 'load', err: unknown): StoreUnavailableError;
  /** Redis Cluster: the hash slot of a key (slots.ts). Absent: any keys may share an MGET. */
  slotOf?: (key: string) => number;
}

interface PendingLoad {
  key: string;
  resolve(value: Fetched): void;
  reject(err: unknown): void;
}

export class LoadBatcher {
  /** Loads waiting for the end of this event-loop turn. */
  private pending: PendingLoad[] = [];

  constructor(private readonly target: LoadTarget) {}

  /** The value at `key`, sent with the other loads of this turn. */
  fetch(key: string): Promise<Fetched> {
    try {
      this.target.ready();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Fetched>((resolve, reject) => {
      const first = this.pending.length === 0;
      this.pending.push({ key, resolve, reject });
      if (this.pending.length >= MAX_LOAD_BATCH) this.flush();
      else if (first) setImmediate(this.flush);
    });
  }

  /**
   * Sends the loads asked for since the last flush (bound: called from setImmediate). Every
   * load of the batch settles exactly once, whatever fails.
   */
  private readonly flush = (): void => {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let sent: Promise<void>;
    try {
      const redis = this.target.ready();
      const { slotOf } = this.target;
      if (batch.length === 1) sent = this.getOne(redis, batch[0] as PendingLoad);
      else sent = slotOf === undefined ? this.getMany(redis, batch) : this.getBySlot(redis, batch, slotOf);
    } catch (err) {
      for (const l of batch) l.reject(err instanceof StoreUnavailableError ? err : this.target.unavailable('load', err));
      return;
    }
    // Whatever is left unsettled by a throw in the handlers fails (a second settle is a no-op).
    sent.catch((err: unknown) => {
      const failure = this.target.unavailable('load', err);
      for (const l of batch) l.reject(failure);
    });
  };

  private getOne(redis: Pick<Redis, 'getBuffer'>, load: PendingLoad): Promise<void> {
    return redis.getBuffer(load.key).then(load.resolve, (err: unknown) => {
      if (err instanceof Error && err.message.startsWith('WRONGTYPE')) load.resolve(WRONG_TYPE);
      else load.reject(this.target.unavailable('load', err));
    });
  }

  /** One GET or MGET per hash slot, all sent now. */
  private getBySlot(redis: Pick<Redis, 'getBuffer' | 'mgetBuffer'>, batch: PendingLoad[], slotOf: (key: string) => number): Promise<void> {
    const bySlot = new Map<number, PendingLoad[]>();
    for (const load of batch) {
      const slot = slotOf(load.key);
      const group = bySlot.get(slot);
      if (group) group.push(load);
      else bySlot.set(slot, [load]);
    }
    const sent: Array<Promise<void>> = [];
    for (const group of bySlot.values()) sent.push(group.length === 1 ? this.getOne(redis, group[0] as PendingLoad) : this.getMany(redis, group));
    return Promise.all(sent).then(() => undefined);
  }

  private getMany(redis: Pick<Redis, 'mgetBuffer'>, batch: PendingLoad[]): Promise<void> {
    return redis.mgetBuffer(batch.map((l) => l.key)).then(
      (values) => {
        for (let i = 0; i < batch.length; i++) (batch[i] as PendingLoad).resolve(values[i] ?? null);
      },
      (err: unknown) => {
        const failure = this.target.unavailable('load', err);
        for (const l of batch) l.reject(failure);
      },
    );
  }
}
