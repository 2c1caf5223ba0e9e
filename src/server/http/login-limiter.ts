/** How many failed logins an address may have in a window before it must wait. */
export interface LoginLimits {
  maxFailures: number;
  windowMs: number;
  /** Addresses remembered at most; the oldest is forgotten first (memory stays bounded). */
  maxAddresses: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = { maxFailures: 5, windowMs: 60_000, maxAddresses: 1024 };

/**
 * Counts failed logins per client address in a fixed window. An address
 * over the limit is refused (HTTP 429) until its window ends, even with the
 * right token, so guessing stays slow.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly limits: LoginLimits = DEFAULT_LOGIN_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds the address must wait, or 0 when it may try. */
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

  succeeded(address: string): void {
    this.failures.delete(address);
  }
}
