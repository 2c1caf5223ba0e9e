/** How many failed logins or wrong Bearer tokens an address may send in a window before it must wait. */
export interface LoginLimits {
  maxFailures: number;
  windowMs: number;
  /** Addresses remembered at most; the oldest is forgotten first (memory stays bounded). */
  maxAddresses: number;
}

/**
 * Counts wrong credentials (login form and Bearer token alike) per client
 * address in a fixed window. The caller checks a credential before asking
 * here, so only a wrong one is ever refused with 429: the right token passes
 * during a lockout, and one guesser behind a proxy cannot shut out everyone
 * else behind it. A right credential does not reset the count either, for
 * the same reason.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly limits: LoginLimits,
    private readonly now: () => number = Date.now,
  ) {}

  get windowMs(): number {
    return this.limits.windowMs;
  }

  /** Milliseconds the address must wait before a wrong credential is answered 401 again, or 0. */
  waitMs(address: string): number {
    const entry = this.failures.get(address);
    if (!entry) return 0;
    const end = entry.since + this.limits.windowMs;
    if (end <= this.now()) {
      this.failures.delete(address);
      return 0;
    }
    return entry.count >= this.limits.maxFailures ? end - this.now() : 0;
  }

  /** Failures the address has in its current window. */
  count(address: string): number {
    this.waitMs(address); // forgets a window that is over
    return this.failures.get(address)?.count ?? 0;
  }

  failed(address: string): void {
    const now = this.now();
    const entry = this.failures.get(address);
    if (entry && entry.since + this.limits.windowMs > now) {
      entry.count++;
      return;
    }
    this.failures.delete(address);
    this.failures.set(address, { count: 1, since: now });
    while (this.failures.size > this.limits.maxAddresses) {
      const oldest = this.failures.keys().next().value;
      if (oldest === undefined) break;
      this.failures.delete(oldest);
    }
  }
}
