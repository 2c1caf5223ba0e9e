import type { Logger } from "pino";

/**
 * A part of the server with a life cycle: the composition root starts the
 * features in order and stops them in reverse, so each stops before what it
 * uses (the database, the broker connection) goes away.
 */
export interface Feature {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A part that is running once it exists (a connection, an opened store): only its stop is left to do. */
export function running(name: string, stop: () => Promise<void>): Feature {
  return { name, start: async () => undefined, stop };
}

/**
 * The server's features, in start order (zigbee2mqtt's controller and its
 * extensions are the model). A feature that fails to start stops everything
 * started before it.
 */
export class FeatureList {
  private readonly started: Feature[] = [];

  constructor(private readonly logger: Logger) {}

  /** Starts `feature` after those already started; returns it. */
  async start<F extends Feature>(feature: F): Promise<F> {
    await feature.start();
    this.started.push(feature);
    return feature;
  }

  /**
   * Stops every started feature, last started first. A feature whose stop
   * fails is logged and the others are still stopped; the first failure is
   * thrown at the end (`quiet`: never, after a failed start).
   */
  async stop(quiet = false): Promise<void> {
    let first: unknown;
    for (const feature of this.started.splice(0).reverse()) {
      try {
        await feature.stop();
      } catch (error) {
        if (!quiet) this.logger.warn({ feature: feature.name, err: (error as Error).message }, "stop failed");
        first ??= error;
      }
    }
    if (first !== undefined && !quiet) throw first;
  }
}
