// Whose cookie is it: one answer for both directions, built once from the configuration and
// the names the app has been seen to set. Pure apart from that bounded set of names.
import { NameMatcher } from './names.js';

/**
 * - `ticket`: coatcheck's own cookie; the app never sees it, and may not set it;
 * - `jar`: the app's, kept server-side: stripped when a client sends it, stored when the app sets it;
 * - `client`: the browser's, untouched both ways (`passthrough`, or not listed in `managed`).
 */
export type CookieOwner = 'ticket' | 'jar' | 'client';

export interface CookiePolicyOptions {
  ticketName: string;
  /** `"*"`: every app cookie is kept server-side except passthrough ones; a list: only those. */
  managed: '*' | readonly string[];
  passthrough: readonly string[];
  /** At most this many app cookie names are remembered (a hostile app cannot grow it without bound). */
  maxAppNames?: number;
}

export class CookiePolicy {
  private readonly ticketName: string;
  private readonly managed: ReadonlySet<string> | null;
  private readonly passthrough: NameMatcher;
  /** Names the app sets (seen in a Set-Cookie, or listed in `managed`): a client presenting one is an alarm. */
  private readonly appNames: Set<string>;
  private readonly maxAppNames: number;

  constructor(opts: CookiePolicyOptions) {
    this.ticketName = opts.ticketName;
    this.managed = opts.managed === '*' ? null : new Set(opts.managed);
    this.passthrough = new NameMatcher(opts.passthrough);
    this.appNames = new Set(this.managed ?? []);
    this.maxAppNames = opts.maxAppNames ?? 1024;
  }

  /** Who owns the cookie called `name`, whichever side it comes from. */
  ownerOf(name: string): CookieOwner {
    if (name === this.ticketName) return 'ticket';
    if (this.managed === null) return this.passthrough.matches(name) ? 'client' : 'jar';
    return this.managed.has(name) ? 'jar' : 'client';
  }

  /** Is `name` a cookie the app itself sets? (A client sending one sends a copy it should not have.) */
  isAppCookie(name: string): boolean {
    return this.appNames.has(name);
  }

  /** The app set a cookie called `name` (kept in its jar). */
  noteAppCookie(name: string): void {
    if (this.appNames.size < this.maxAppNames) this.appNames.add(name);
  }
}
