// The one cookie coatcheck gives the browser: its Set-Cookie to give and to clear. Pure.
import type { Config } from '../config/schema.js';

/** "; Path=/; HttpOnly; Secure; SameSite=Lax" (+ Domain), computed once at start-up. */
function ticketAttributesOf(cookie: Config['cookie'], domain: string | null): string {
  const sameSite = cookie.sameSite === 'strict' ? 'Strict' : cookie.sameSite === 'lax' ? 'Lax' : 'None';
  return `; Path=/${domain ? `; Domain=${domain}` : ''}; HttpOnly${cookie.secure ? '; Secure' : ''}; SameSite=${sameSite}`;
}

/** The ticket cookie's two Set-Cookie forms, their attributes computed once. */
export class TicketCookie {
  private readonly attributes: string;
  private readonly maxAge: string;
  readonly clear: string;
  /**
   * Clearings of the ticket in the other forms coatcheck may have set it (host-only, when
   * cookie.domain is set and the ticket carries a Domain), sent with `clear` or a new ticket
   * when a request carried several tickets.
   */
  readonly clearOtherForms: readonly string[];
  constructor(
    readonly name: string,
    cookie: Config['cookie'],
    absoluteTimeoutMs: number,
  ) {
    this.attributes = ticketAttributesOf(cookie, cookie.domain);
    this.maxAge = cookie.persistent ? `; Max-Age=${Math.floor(absoluteTimeoutMs / 1000)}` : '';
    this.clear = `${name}=${this.attributes}; Max-Age=0`;
    this.clearOtherForms = Object.freeze(cookie.domain ? [`${name}=${ticketAttributesOf(cookie, null)}; Max-Age=0`] : []);
  }

  /** The Set-Cookie that gives the browser `ticket`. */
  give(ticket: string): string {
    return `${this.name}=${ticket}${this.attributes}${this.maxAge}`;
  }
}
