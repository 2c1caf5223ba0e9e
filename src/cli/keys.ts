import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { FileError, UsageError } from "../errors.ts";
import { modulusCString } from "../protocol/config-h.ts";
import { DEFAULT_BLOCK_SIZE, SEQ_LENGTH } from "../protocol/datagram.ts";
import { generateKeyPair, type KeyBits, SUPPORTED_KEY_BITS } from "../protocol/rsa-key.ts";
import type { CliIo } from "./io.ts";
import { DEFAULT_KEY_FILE, loadPublicKey } from "./key-options.ts";
import { checkOutputFree, writeFilesAtomic } from "./write-file.ts";

export const PRIVATE_KEY_NAME = "priv.key";
export const PUBLIC_KEY_NAME = "pub.key";
/** Datagrams of 549 bytes or more were seen to vanish on some networks. */
const SAFE_DATAGRAM_LIMIT = 548;

function parseBits(value: string): KeyBits {
  const bits = Number(value);
  const supported = SUPPORTED_KEY_BITS as readonly number[];
  if (!/^\d+$/.test(value) || !supported.includes(bits)) {
    throw new UsageError(
      `--bits must be 512, 1024 or 2048, not "${value}". 512 matches the bootloaders already deployed; 1024 or 2048 need a bootloader rebuilt with the new modulus.`,
    );
  }
  return bits as KeyBits;
}

/** Bytes on the wire for one full block: seq, the body padded to 16, the signature. */
export function datagramSize(block: number, bits: number): number {
  return SEQ_LENGTH + Math.ceil((8 + block) / 16) * 16 + bits / 8;
}

/**
 * A warning for a signing key of a size `mpota keys new` does not make
 * (openssl makes any): its datagrams are larger than any bootloader was
 * tried with, and above the size some networks drop. Undefined for 512,
 * 1024 and 2048 bits.
 */
export function unusualKeyWarning(bits: number, block: number): string | undefined {
  if ((SUPPORTED_KEY_BITS as readonly number[]).includes(bits)) return undefined;
  const size = datagramSize(block, bits);
  return `this is a ${bits}-bit key, a size \`mpota keys new\` does not make (512, 1024 or 2048 bits): each ${block}-byte block travels in a datagram of ${size} bytes${size > SAFE_DATAGRAM_LIMIT ? `, above the ~${SAFE_DATAGRAM_LIMIT} bytes some networks were seen to drop` : ""}, and yaota8266's receiver is untested with keys this size. If the device never answers, use a key of 2048 bits or less (and a bootloader built with its modulus).`;
}

function securityNote(bits: KeyBits): string {
  const sizes = SUPPORTED_KEY_BITS.map((b) => `${datagramSize(DEFAULT_BLOCK_SIZE, b)} bytes with ${b} bits`);
  const larger = `Larger keys are untested on hardware by upstream, and they make every datagram larger: a ${DEFAULT_BLOCK_SIZE}-byte block travels in ${sizes.join(", ")}, all still below the ~${SAFE_DATAGRAM_LIMIT} bytes above which some networks were seen to drop datagrams.`;
  if (bits === 512) {
    return `Security: a 512-bit RSA key can be factored with modest means (some cloud computing money and a few hours to days), and whoever factors it can sign firmware your devices will accept. 512 is the default only because deployed yaota8266 bootloaders hold 512-bit moduli.
To use a stronger key, run \`mpota keys new --bits 2048\` (or --bits 1024), then rebuild yaota8266 with the new modulus and flash it to every device: a bootloader accepts only the key it was built with.
${larger}
`;
  }
  return `Note: a bootloader accepts only the key it was built with, so rebuild yaota8266 with this modulus and flash it to every device before pushing updates signed with this key.
${larger}
`;
}

async function keysNew(io: CliIo, options: { dir: string; bits: KeyBits; force?: boolean }): Promise<void> {
  const dir = resolve(options.dir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new FileError(`Cannot create the folder ${dir} for the keys: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const privPath = join(dir, PRIVATE_KEY_NAME);
  const pubPath = join(dir, PUBLIC_KEY_NAME);
  const overwriteHint =
    "(the old key is then lost: devices whose bootloader holds its modulus will refuse updates signed with the new key)";
  const force = options.force === true;
  const alternative = "choose another folder with --dir";
  const privOptions = { force, mode: 0o600, what: "Private key", overwriteHint, alternative };
  const pubOptions = { force, what: "Public key", overwriteHint, alternative };
  // Refuse before spending time on a key that could not be written.
  checkOutputFree(privPath, privOptions);
  checkOutputFree(pubPath, pubOptions);
  const pair = generateKeyPair(options.bits);
  await writeFilesAtomic([
    { target: privPath, data: pair.privatePem, options: privOptions },
    { target: pubPath, data: pair.publicPem, options: pubOptions },
  ]);
  io.out(`Wrote a new ${pair.key.bits}-bit RSA key pair (public exponent 3):
  private key  ${privPath}  (mode 0600; keep it secret: it signs firmware)
  public key   ${pubPath}

Put this modulus into yaota8266's config.h, then rebuild and flash the bootloader:
#define MODULUS "${modulusCString(pair.key)}"
or write a complete config.h with:  mpota config-h --key ${privPath} -o config.h

${securityNote(options.bits)}`);
}

function keysModulus(io: CliIo, options: { key: string; hex?: boolean }): void {
  const key = loadPublicKey({ key: resolve(options.key) });
  if (key === undefined) throw new Error("loadPublicKey returned nothing for --key");
  if (options.hex === true) {
    io.out(`${Buffer.from(key.modulus).toString("hex")}\n`);
  } else {
    io.out(`#define MODULUS "${modulusCString(key)}"\n`);
  }
}

/** `mpota keys new` and `mpota keys modulus`. */
export function registerKeysCommand(program: Command, io: CliIo): void {
  const keys = program.command("keys").description("Create RSA keys with exponent 3 and show their modulus");

  keys
    .command("new")
    .description(
      `Create an RSA key pair with exponent 3: ${PRIVATE_KEY_NAME} (PKCS#1 PEM, mode 0600) and ${PUBLIC_KEY_NAME}`,
    )
    .option("--dir <folder>", "where to write the keys (created if missing)", ".")
    .option(
      "--bits <n>",
      "key size: 512 (what deployed bootloaders use), 1024 or 2048",
      parseBits,
      512 as KeyBits,
    )
    .option("--force", "replace existing key files (the old key is lost)")
    .action(async (options: { dir: string; bits: KeyBits; force?: boolean }) => {
      await keysNew(io, options);
    });

  keys
    .command("modulus")
    .description('Print the modulus as the #define MODULUS "\\x.." line of yaota8266\'s config.h')
    .option("--key <file>", "private or public key (PEM)", DEFAULT_KEY_FILE)
    .option("--hex", "print plain hex instead, as `mpota emulate --modulus` takes it")
    .action((options: { key: string; hex?: boolean }) => {
      keysModulus(io, options);
    });
}
