/**
 * Says whether a refusal from a source should be logged now: at most once
 * per source per period, so 300 wrong tokens from one address are one log
 * line a minute, not 300. Sources are remembered in a bounded map (oldest
 * forgotten first) so a flood of addresses cannot grow memory.
 */
export class SourceLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly periodMs = 60_000,
    private readonly maxSources = 1024,
    private readonly now: () => number = Date.now,
  ) {}

  /** The number of refusals not logged since the last line (0 or more), or undefined when this one is not to be logged. */
  due(source: string): number | undefined {
    const now = this.now();
    const entry = this.last.get(source);
    if (entry && now - entry.at < this.periodMs) {
      entry.suppressed++;
      return undefined;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.delete(source);
    this.last.set(source, { at: now, suppressed: 0 });
    while (this.last.size > this.maxSources) {
      const oldest = this.last.keys().next().value;
      if (oldest === undefined) break;
      this.last.delete(oldest);
    }
    return suppressed;
  }
}
