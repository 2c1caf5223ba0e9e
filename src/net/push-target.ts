import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { MpotaError } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";
import { type Interfaces, nonUnicastReason } from "./unicast.ts";

/** The address given to push to cannot be one device: broadcast, multicast, unspecified, or a name that does not resolve. */
export class PushTargetError extends MpotaError {
  override readonly exitCode: number = EXIT_CODES.pushTarget.code;
}

export interface ResolveOptions {
  /** Name resolution (the system resolver by default); tests inject their own. */
  lookup?: (host: string) => Promise<string>;
  interfaces?: Interfaces;
}

async function systemLookup(host: string): Promise<string> {
  return (await lookup(host)).address;
}

/**
 * The unicast IP address to push to for `host` (an address, or a name the
 * system resolves). Throws PushTargetError with the reason for anything
 * else, before a socket is opened.
 */
export async function resolvePushTarget(host: string, options: ResolveOptions = {}): Promise<string> {
  const text = host.trim();
  if (text === "") throw new PushTargetError("--to is empty: give the device's IP address or host name.");
  let address = text.replace(/^\[(.*)\]$/, "$1");
  let name = "";
  if (isIP(address) === 0) {
    try {
      address = await (options.lookup ?? systemLookup)(text);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why =
        code === "ENOTFOUND"
          ? "no such name"
          : code === "EAI_AGAIN"
            ? "the name server did not answer"
            : (error as Error).message;
      throw new PushTargetError(
        `Cannot push to ${text}: the name does not resolve (${why}). Check the spelling, or give the device's IP address (the router's list of clients or the device's serial console shows it).`,
        { cause: error },
      );
    }
    name = `${text} resolves to ${address}, which `;
  }
  const reason = nonUnicastReason(address, options.interfaces);
  if (reason !== undefined) {
    const said = name === "" ? reason : `${name}${reason.slice(reason.indexOf(" is ") + 1)}`;
    throw new PushTargetError(
      `Cannot push to ${text}: ${said}. An update goes to one device: give that device's own IP address.`,
    );
  }
  return address;
}
