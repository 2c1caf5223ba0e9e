import pg from "pg";
import { MpotaError } from "../../errors.ts";
import { StorageError, StorageUnavailableError } from "./storage.ts";

/**
 * The PostgreSQL connection pool behind postgres-storage.ts: URL checks,
 * connecting with a bounded retry at start, queries and transactions, and
 * turning every driver error into a {@link StorageError} that says what to
 * check. A broken connection (the database restarted) fails the operation
 * under way; the pool opens new connections for the next ones.
 */

export interface PostgresTarget {
  /** user@host:port/database: for messages and logs, never with the password. */
  label: string;
  host: string;
  port: number;
  database: string;
}

/** BIGINT (int8) columns hold milliseconds and counts: numbers, not strings. */
const INT8_OID = 20;
const TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

/** What the URL names, or a StorageError saying how to write it. */
export function parsePostgresUrl(url: string): PostgresTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StorageError(
      `The database URL ${redactUrl(url)} is not a valid URL. Write it as postgres://USER:PASSWORD@HOST:5432/DATABASE (percent-encode special characters in the password, e.g. @ as %40) in --db or MPOTA_DB.`,
    );
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new StorageError(
      `The database URL ${redactUrl(url)} is not a PostgreSQL URL: it must start with postgres:// or postgresql://.`,
    );
  }
  const socket = parsed.searchParams.get("host");
  const host = decodeURIComponent(parsed.hostname) || socket || "localhost";
  const port = parsed.port === "" ? 5432 : Number(parsed.port);
  const user = decodeURIComponent(parsed.username) || process.env.PGUSER || "";
  const database = decodeURIComponent(parsed.pathname.slice(1)) || user;
  return { label: `${user ? `${user}@` : ""}${host}:${port}/${database}`, host, port, database };
}

/** The URL with its password replaced by ***, for messages. */
export function redactUrl(url: string): string {
  // Up to the last @: a password with an unencoded @ is hidden whole.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:).*@/i, "$1***@");
}

/** Node and PostgreSQL error codes that mean "the database is not there (yet)": worth waiting for. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up or shutting down
  "53300", // too_many_connections
]);

type ErrorKind = "unreachable" | "login" | "no-database" | "other";

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

export function errorKind(error: unknown): ErrorKind {
  const code = codeOf(error);
  if (code === "28P01" || code === "28000") return "login";
  if (code === "3D000") return "no-database";
  if (code !== undefined && (UNREACHABLE_CODES.has(code) || code.startsWith("08"))) return "unreachable";
  const message = (error as Error)?.message ?? "";
  if (
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable|ECONNREFUSED/i.test(
      message,
    )
  ) {
    return "unreachable";
  }
  return "other";
}

function causeText(error: unknown): string {
  const e = error as { message?: string; code?: string };
  const message = e?.message || String(error);
  const code = e?.code;
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** The StorageError for a failure at start (connecting), saying what to check. */
export function connectError(error: unknown, target: PostgresTarget, triedMs: number): StorageError {
  switch (errorKind(error)) {
    case "login":
      return new StorageError(
        `PostgreSQL at ${target.host}:${target.port} refused the login for ${target.label}: ${causeText(error)}. Check the user name and password in --db or MPOTA_DB, and that pg_hba.conf lets this user connect from here.`,
        { cause: error },
      );
    case "no-database":
      return new StorageError(
        `PostgreSQL at ${target.host}:${target.port} has no database "${target.database}". Create it (createdb -O USER ${target.database}) or fix the database name in --db or MPOTA_DB.`,
        { cause: error },
      );
    case "unreachable":
      return new StorageError(
        `Cannot reach PostgreSQL at ${target.host}:${target.port} (${causeText(error)}); tried for ${Math.round(triedMs / 100) / 10} s. Check that the database server runs and accepts TCP connections there, and the host and port in --db or MPOTA_DB.`,
        { cause: error },
      );
    default:
      return new StorageError(
        `Cannot connect to PostgreSQL ${target.label}: ${causeText(error)}. Check --db or MPOTA_DB (host, port, user, password, database, sslmode).`,
        { cause: error },
      );
  }
}

/** The StorageError for a failure of a running operation. */
export function operationError(error: unknown, target: PostgresTarget, operation: string): Error {
  if (error instanceof MpotaError) return error;
  if (errorKind(error) === "unreachable") {
    return new StorageUnavailableError(
      `Lost the connection to PostgreSQL ${target.label} while ${operation} (${causeText(error)}): the operation failed (a change is stored whole or not at all). mpota connects again by itself for the next operation; if this goes on, check that the database server runs.`,
      { cause: error },
    );
  }
  return new StorageError(
    `PostgreSQL ${target.label} failed while ${operation}: ${causeText(error)}. Nothing of this operation was stored.`,
    { cause: error },
  );
}

/** Runs SQL on one connection (the pool, or a client inside a transaction). */
export interface Sql {
  rows<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  one<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R | undefined>;
  /** Rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

function sqlOn(queryable: pg.Pool | pg.PoolClient): Sql {
  return {
    rows: async <R>(sql: string, params: readonly unknown[] = []) =>
      (await queryable.query(sql, params as unknown[])).rows as R[],
    one: async <R>(sql: string, params: readonly unknown[] = []) =>
      (await queryable.query(sql, params as unknown[])).rows[0] as R | undefined,
    run: async (sql: string, params: readonly unknown[] = []) =>
      (await queryable.query(sql, params as unknown[])).rowCount ?? 0,
  };
}

/** Errors a transaction is simply tried again for. */
const RETRY_CODES = new Set(["40001", "40P01"]); // serialization_failure, deadlock_detected

export interface PostgresPoolOptions {
  /** Connections at most (default 10). */
  poolSize?: number;
  /** How long one connection attempt may take (default 5 s). */
  connectTimeoutMs?: number;
}

export class PostgresDb {
  private closed = false;
  /** The last error of an idle connection (the database went away); the next operation reconnects. */
  lastIdleError: Error | undefined;

  constructor(
    private readonly pool: pg.Pool,
    readonly target: PostgresTarget,
  ) {
    // An idle connection that breaks (database restarted) must not crash the
    // process: the pool drops it and opens a new one when asked.
    pool.on("error", (error) => {
      this.lastIdleError = error;
    });
    // A checked-out connection that breaks emits "error" on its client: the
    // query under way fails, the process goes on. The listener goes on as the
    // pool makes the client, not after the checkout: the database's goodbye
    // (57P01 while it shuts down) can come in the same read as the connection's
    // "ready", before the code awaiting the checkout runs.
    pool.on("connect", (client) => {
      client.on("error", (error) => {
        this.lastIdleError = error;
      });
    });
  }

  static create(url: string, options: PostgresPoolOptions = {}): PostgresDb {
    const target = parsePostgresUrl(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: "mpota",
      types: TYPES,
    });
    return new PostgresDb(pool, target);
  }

  /** A connection of the pool; the caller releases it. Errors are the driver's (see connectError). */
  async connect(): Promise<pg.PoolClient> {
    return this.pool.connect();
  }

  /** Connects, retrying for up to `retryMs` while the database is unreachable (starting up, restarting). */
  async connectAtStart(retryMs: number): Promise<pg.PoolClient> {
    const started = Date.now();
    let delay = 200;
    for (;;) {
      try {
        return await this.connect();
      } catch (error) {
        const waited = Date.now() - started;
        if (errorKind(error) !== "unreachable" || waited + delay > retryMs) {
          throw connectError(error, this.target, waited);
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** One statement outside a transaction. */
  async sql<T>(operation: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    this.checkOpen(operation);
    try {
      return await fn(sqlOn(this.pool));
    } catch (error) {
      throw operationError(error, this.target, operation);
    }
  }

  /** Runs `fn` in a transaction (READ COMMITTED), tried again on a deadlock; rolled back on any error. */
  async tx<T>(operation: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    this.checkOpen(operation);
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.connect();
      } catch (error) {
        throw operationError(error, this.target, operation);
      }
      let broken = false;
      try {
        await client.query("BEGIN");
        const result = await fn(sqlOn(client));
        await client.query("COMMIT");
        return result;
      } catch (error) {
        broken = errorKind(error) === "unreachable";
        if (!broken) await client.query("ROLLBACK").catch(() => (broken = true));
        if (!broken && attempt < 4 && RETRY_CODES.has(codeOf(error) ?? "")) continue;
        throw operationError(error, this.target, operation);
      } finally {
        client.release(broken);
      }
    }
  }

  /** The StorageError for `error` during `operation`. */
  wrap(error: unknown, operation: string): Error {
    return operationError(error, this.target, operation);
  }

  private checkOpen(operation: string): void {
    if (this.closed) {
      throw new StorageError(`The PostgreSQL storage ${this.target.label} is closed (while ${operation}).`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
