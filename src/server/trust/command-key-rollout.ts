import { type SignedKeysCommand, signCommand } from "../../protocol/command-signature.ts";
import type { DeviceState } from "../../protocol/mqtt-contract.ts";
import { type Json, toJson } from "../api/topics.ts";
import type { Storage } from "../storage/storage.ts";
import type { CommandKeyRing } from "./command-key-ring.ts";

/** A device still lacking a key after this long is sent the keys again. */
const RESEND_AFTER_MS = 10_000;

/**
 * Gives devices the server's command keys (`mpota command-key rotate` and
 * `promote`). When a device that verifies commands (contract v2, its state
 * names the keys it trusts) checks in trusting other keys than it should,
 * and no job holds its command topic, it gets a retained `keys` command
 * signed with a key it trusts; it stores the list and reports it in its
 * next state, and the command is withdrawn. What it should trust: during a
 * rotation the current and the next key (a device that already trusts the
 * next one is left alone, so an instance not yet restarted after a promotion
 * does not undo it); otherwise the current key only, so a promoted rotation
 * also takes the retired key out of the devices. A device that trusts none
 * of the server's keys cannot be told anything: it is named in the log.
 */
export class CommandKeyRollout {
  /** Devices this instance sent the keys to and has not yet seen take them, with when. */
  private readonly sent = new Map<string, number>();
  /** Devices already named in the log for trusting none of the keys. */
  private readonly unreachable = new Set<string>();

  constructor(
    private readonly o: {
      storage: Storage;
      keys: CommandKeyRing;
      publish: (deviceId: string, payload: Json<SignedKeysCommand> | "") => Promise<void>;
      now: () => number;
      logger: { info(o: object, m: string): void; warn(o: object, m: string): void };
    },
  ) {}

  async handleState(deviceId: string, state: DeviceState): Promise<void> {
    const { keys, storage } = this.o;
    // A state without `keys` says nothing about what the device trusts (a v1 agent cannot verify at all).
    if (state.v < 2 || state.keys === undefined) return;
    const kids = state.keys;
    const trusted = keys.trusted();
    const settled = keys.next
      ? kids.includes(keys.next.kid)
      : kids.length === 1 && kids[0] === keys.current.kid;
    if (await storage.jobs.activeForDevice(deviceId)) return; // the command topic is the job's
    if (settled) {
      this.unreachable.delete(deviceId);
      if (this.sent.delete(deviceId)) {
        await this.o.publish(deviceId, "");
        this.o.logger.info({ device: deviceId, keys: kids }, "device took the command keys");
      }
      return;
    }
    const signer = trusted.find((k) => kids.includes(k.kid));
    if (!signer) {
      if (!this.unreachable.has(deviceId)) {
        this.unreachable.add(deviceId);
        this.o.logger.warn(
          { device: deviceId, keys: kids, trusted: trusted.map((k) => k.kid) },
          `device trusts none of the server's command keys and ignores every command: give it a new mpota_config.py (\`mpota devices rotate ${deviceId}\`)`,
        );
      }
      return;
    }
    // Sent again at each check-in that still lacks a key (a job's command may have replaced it),
    // but not twice within one wake: the device reports the keys right after it takes them.
    const last = this.sent.get(deviceId);
    if (last !== undefined && this.o.now() - last < RESEND_AFTER_MS) return;
    const seq = await storage.credentials.nextCommandSeq(deviceId, state.seq ?? 0);
    if (seq === undefined) return; // not provisioned: it cannot have a key of ours either
    // toJson: the bytes of encodeCommand, typed as the cmd topic's payload.
    const payload = toJson(
      signCommand(
        { op: "keys", dev: deviceId, seq, keys: trusted.map((k) => k.modulusHex) },
        signer.privateKey,
      ),
    );
    await this.o.publish(deviceId, payload);
    this.sent.set(deviceId, this.o.now());
    this.o.logger.info(
      { device: deviceId, keys: trusted.map((k) => k.kid), signedWith: signer.kid },
      "command keys sent",
    );
  }
}
