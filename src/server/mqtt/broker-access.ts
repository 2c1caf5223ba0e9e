import { timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import { DEVICE_ID_PATTERN, RESERVED_DEVICE_IDS } from "../../protocol/mqtt-contract.ts";
import type { Topics } from "../api/topics.ts";
import { jsonNestingProblem } from "../base/json-nesting.ts";
import type { CredentialRecord } from "../storage/storage.ts";
import { verifySecretAsync } from "./credentials.ts";
import { ADMIN_USERNAME, RESERVED_ID_PREFIX, SERVER_USERNAME } from "./principals.ts";

/** Who a connected client is. */
export type Principal =
  | { kind: "server" }
  | { kind: "admin"; clientId: string; address: string }
  | { kind: "device"; id: string };

/** Why a connection was refused: a CONNACK return code and a line for the log. */
export interface Refusal {
  returnCode: 4 | 5;
  reason: string;
}

export interface BrokerAccessOptions {
  topics: Topics;
  /** Home Assistant's discovery prefix (its birth message `<prefix>/status` may come from an admin client). */
  haPrefix: string;
  /** The server's own password on this broker. */
  serverSecret: string;
  /** Whether `candidate` is the admin token now (it is read again when rotated). */
  adminTokenMatches: (candidate: string) => boolean;
  /** The stored credential of a device, if it was provisioned. */
  credential: (deviceId: string) => Promise<CredentialRecord | undefined>;
  logger: Logger;
}

/** The field of a bridge request that says who sent it (set by the embedded broker only). */
export const CALLER_FIELD = "$caller";
/** Requests larger than this are not stamped (the bridge refuses them anyway). */
const MAX_STAMPED_BYTES = 4 * 1024 * 1024;

/** How many refused client ids are remembered so each is logged once (then at debug level). */
const LOGGED_REFUSALS = 1024;

function equalSecrets(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Who may connect to the embedded broker and what each may publish and
 * subscribe to (docs/security.md): the server everything; people and tools
 * (the admin token) the bridge requests, Home Assistant's install commands
 * and reading; a device only its own topics, never a command. Anonymous
 * clients are refused, and a device's client id can only be used with that
 * device's own credential, so nobody can throw a device off the broker.
 */
export class BrokerAccess {
  private readonly logged = new Set<string>();
  private readonly base: string;

  constructor(private readonly o: BrokerAccessOptions) {
    this.base = o.topics.base;
  }

  /** Checks a CONNECT; the principal, or why it is refused. */
  async authenticate(
    clientId: string,
    username: string | undefined,
    password: Buffer | undefined,
    address: string,
  ): Promise<Principal | Refusal> {
    const result = await this.check(clientId, username, password?.toString("utf8"), address);
    if ("reason" in result) this.logRefusal(clientId, username, address, result.reason);
    return result;
  }

  private async check(
    clientId: string,
    username: string | undefined,
    password: string | undefined,
    address: string,
  ): Promise<Principal | Refusal> {
    if (username === undefined || username === "" || password === undefined) {
      return {
        returnCode: 5,
        reason:
          "no user name and password: this broker refuses anonymous clients (devices use their own credential from `mpota devices add`, tools the admin token)",
      };
    }
    if (username === SERVER_USERNAME || username === ADMIN_USERNAME) {
      const ok =
        username === SERVER_USERNAME
          ? equalSecrets(password, this.o.serverSecret)
          : this.o.adminTokenMatches(password);
      if (!ok) return { returnCode: 4, reason: `wrong password for ${username}` };
      if (await this.isDeviceClientId(clientId)) {
        return { returnCode: 5, reason: `client id "${clientId}" belongs to a device` };
      }
      return username === SERVER_USERNAME ? { kind: "server" } : { kind: "admin", clientId, address };
    }
    if (
      !DEVICE_ID_PATTERN.test(username) ||
      RESERVED_DEVICE_IDS.has(username) ||
      username.startsWith(RESERVED_ID_PREFIX)
    ) {
      return { returnCode: 4, reason: `unknown user "${username.slice(0, 64)}"` };
    }
    const record = await this.o.credential(username);
    if (!record) {
      return {
        returnCode: 4,
        reason: `device "${username}" is not provisioned (mpota devices add ${username})`,
      };
    }
    if (!(await verifySecretAsync(password, record.hash))) {
      return { returnCode: 4, reason: `wrong credential for device "${username}"` };
    }
    if (clientId !== username) {
      return {
        returnCode: 5,
        reason: `device "${username}" must connect with its id as client id, not "${clientId.slice(0, 64)}"`,
      };
    }
    return { kind: "device", id: username };
  }

  private async isDeviceClientId(clientId: string): Promise<boolean> {
    if (!DEVICE_ID_PATTERN.test(clientId)) return false;
    return (await this.o.credential(clientId)) !== undefined;
  }

  private logRefusal(clientId: string, username: string | undefined, address: string, reason: string): void {
    const key = `${clientId}\u0000${address}\u0000${reason}`;
    const first = !this.logged.has(key);
    if (first) {
      if (this.logged.size >= LOGGED_REFUSALS) this.logged.clear();
      this.logged.add(key);
    }
    const fields = { client: clientId.slice(0, 64), user: username?.slice(0, 64), address, reason };
    if (first) this.o.logger.warn(fields, "MQTT client refused");
    else this.o.logger.debug(fields, "MQTT client refused again");
  }

  /** Whether the client may publish to `topic`. */
  mayPublish(principal: Principal, topic: string): boolean {
    if (principal.kind === "server") return true;
    // The broker's own ($SYS/...): a client publishing there could feed other clients false broker facts.
    if (topic.startsWith("$SYS/")) return false;
    const prefix = `${this.base}/`;
    if (principal.kind === "device") {
      // Its own topics (state, status, ack, the user's telemetry), never a command.
      const own = `${prefix}${principal.id}/`;
      return topic.startsWith(own) && topic.length > own.length && topic !== `${own}cmd`;
    }
    if (topic.startsWith(`${prefix}bridge/request/`)) return true;
    if (topic.startsWith(`${prefix}bridge/homeassistant/`) && topic.endsWith("/install")) return true;
    if (topic === `${this.o.haPrefix}/status`) return true;
    return !topic.startsWith(prefix) && !topic.startsWith(`${this.o.haPrefix}/`);
  }

  /** Whether the client may subscribe to `filter`. */
  maySubscribe(principal: Principal, filter: string): boolean {
    if (principal.kind === "device") return filter === `${this.base}/${principal.id}/cmd`;
    return true;
  }

  /**
   * A bridge request from an admin client, with who sent it added as
   * `$caller` (any `$caller` the client put there itself is replaced), so the
   * server can record who asked. Undefined when the payload is left as it is.
   */
  stampCaller(principal: Principal, topic: string, payload: Buffer): Buffer | undefined {
    if (principal.kind !== "admin" || !topic.startsWith(`${this.base}/bridge/request/`)) return undefined;
    if (payload.length > MAX_STAMPED_BYTES) return undefined;
    const text = payload.toString("utf8");
    // Too deep for JSON.stringify below (it threw a RangeError in the broker); the bridge refuses it.
    if (jsonNestingProblem(text, "The request")) return undefined;
    let request: unknown;
    try {
      request = payload.length === 0 ? {} : JSON.parse(text);
    } catch {
      return undefined; // the bridge answers it with an error
    }
    if (typeof request !== "object" || request === null || Array.isArray(request)) return undefined;
    return Buffer.from(JSON.stringify({ ...request, [CALLER_FIELD]: BrokerAccess.actor(principal) }));
  }

  /** Who asked, in words for the audit list. */
  static actor(principal: Principal): string {
    switch (principal.kind) {
      case "server":
        return "the server";
      case "admin":
        return `mqtt ${ADMIN_USERNAME} (client ${principal.clientId.slice(0, 64)}, ${principal.address})`;
      case "device":
        return `device ${principal.id}`;
    }
  }
}
