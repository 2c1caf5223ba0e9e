import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after } from "node:test";
import { AgentDevice } from "../../src/agent-host/agent-device.ts";
import type { RunEnd } from "../../src/agent-host/agent-device-events.ts";
import { DEVICE_DIR } from "../../src/agent-host/agent-files.ts";
import { DeviceFilesystem, type FilesystemKind } from "../../src/agent-host/device-filesystem.ts";
import type { FsStep } from "../../src/agent-host/fs-step.ts";
import { DEFAULT_MICROPYTHON, type MicroPythonRelease } from "../../src/agent-host/micropython-release.ts";
import { appKeyModulus } from "../../src/apps/app-key.ts";
import { signAppManifest } from "../../src/apps/app-signature.ts";
import type { MpyNeed } from "../../src/apps/mpy-header.ts";
import { BOARD_MPY } from "./micropython.ts";

// A simulated board (real MicroPython wasm in a worker, the host's LittleFS
// or FAT model, power cuts before any durable step) whose main.py is the
// loader, and the Python that stages a release on it, as the agent will.

/**
 * What the app tests fake of each board kind: `sys.platform`, the
 * filesystem MicroPython formats on it and its size (what `os.statvfs`
 * reports), `sys.implementation._mpy` (v1.27 and v1.29 alike), and the heap an app can count
 * on after boot. Sources in docs/app-updates.md ("Boards").
 */
export interface BoardProfile {
  platform: "esp8266" | "esp32" | "rp2";
  label: string;
  fs: FilesystemKind;
  /** Filesystem bytes. */
  capacity: number;
  mpy: number;
  /** gc.mem_free() after boot with WiFi up, bytes (0: not known). */
  heapFree: number;
}

export const BOARDS: readonly BoardProfile[] = [
  // Since v1.13 every ESP8266 build with a filesystem formats LittleFS (the 1 MiB and OTA variants have no FAT
  // at all); 1 MiB build: 396 KiB. 30-40 KiB of heap free after boot with WiFi.
  {
    platform: "esp8266",
    label: "ESP8266 (1 MiB, LittleFS)",
    fs: "littlefs",
    capacity: 396 * 1024,
    mpy: BOARD_MPY.esp8266,
    heapFree: 30 * 1024,
  },
  // A 2 MiB+ board formatted FAT before v1.13 keeps it (those builds still mount FAT): about 1 MiB.
  {
    platform: "esp8266",
    label: "ESP8266 (2 MiB, FAT)",
    fs: "fat",
    capacity: 1024 * 1024,
    mpy: BOARD_MPY.esp8266,
    heapFree: 30 * 1024,
  },
  // ESP32_GENERIC: LittleFS in the 4 MiB flash's vfs partition (0x0F0000); about 90 KB free without SPIRAM.
  {
    platform: "esp32",
    label: "ESP32 (4 MiB, LittleFS)",
    fs: "littlefs",
    capacity: 960 * 1024,
    mpy: BOARD_MPY.esp32,
    heapFree: 90_000,
  },
  // RPI_PICO_W: LittleFS, MICROPY_HW_FLASH_STORAGE_BYTES 848 KiB; the heap is not checked (see the docs).
  {
    platform: "rp2",
    label: "Pico W (LittleFS)",
    fs: "littlefs",
    capacity: 848 * 1024,
    mpy: BOARD_MPY.rp2,
    heapFree: 0,
  },
];
/** The ESP8266 as MicroPython formats it today. */
export const ESP8266 = BOARDS[0] as BoardProfile;

export const KEY = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }).privateKey;
export const MODULUS = appKeyModulus(KEY, "test key").toString("hex");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** main.py on every board: the loader, which never changes. */
export const LOADER_MAIN = "import mpota_loader\nmpota_loader.run()\n";

export interface Release {
  version: string;
  files: Record<string, string>;
  manifest: Buffer;
}

export function release(
  version: string,
  files: Record<string, string>,
  boards: string[] = ["esp32", "esp8266", "rp2"],
  mpy: MpyNeed | undefined = undefined,
): Release {
  const manifest = signAppManifest(
    {
      name: "thermostat",
      version,
      boards,
      mpy,
      files: Object.entries(files).map(([path, text]) => ({
        path,
        size: Buffer.byteLength(text),
        sha256: sha(Buffer.from(text)),
      })),
    },
    KEY,
  ).bytes;
  return { version, files, manifest };
}

const hexOf = (s: string | Buffer) => Buffer.from(s).toString("hex");

/**
 * Python that receives the manifest (as the agent would, through a Receiver)
 * and stages the release; the files' bytes come in 100-byte pieces. With
 * `list`, it goes through mpota_stage.steps() and prints each step (`check
 * thermostat`, `kept main.py`, `copied ..`, `fetched ..`, `switch thermostat`).
 */
export function updateScript(r: Release, extra = "", board: BoardProfile = ESP8266, list = false): string {
  const bytes = Object.entries(r.files)
    .map(([p, t]) => `    ${JSON.stringify(p)}: unhexlify("${hexOf(t)}"),`)
    .join("\n");
  return `import mpota_app
import mpota_stage
from binascii import unhexlify
BYTES = {
${bytes}
}
M = unhexlify("${hexOf(r.manifest)}")


def fetch(digest, size, path, rec):
    b = BYTES[path]
    for i in range(0, len(b), 100):
        rec.write(b[i : i + 100])


rec = mpota_app.Receiver("/stage.manifest", 65536, None)
rec.write(M)
rec.close()
try:
    ${
      list
        ? `for s in mpota_stage.steps("/stage.manifest", ["${MODULUS}"], fetch, platform="${board.platform}", mpy=${board.mpy}${extra}):
        if s[0] != "space":
            print(*s[:2])`
        : `print("staged", mpota_stage.stage("/stage.manifest", ["${MODULUS}"], fetch, platform="${board.platform}", mpy=${board.mpy}${extra}))`
    }
except mpota_app.AppError as e:
    print("refused:", e)
`;
}

/** How a run ended: at its end (REPL, reset, sleep) or at a power cut before a step. */
export type Outcome = { cut: FsStep } | { end: RunEnd };

export function device(
  fs: DeviceFilesystem,
  micropython: MicroPythonRelease = DEFAULT_MICROPYTHON,
): AgentDevice {
  const files: Record<string, string> = {};
  for (const f of ["mpota_loader.py", "mpota_app.py", "mpota_stage.py"])
    files[f] = readFileSync(join(DEVICE_DIR, f), "utf8");
  return new AgentDevice({
    broker: "mqtt://127.0.0.1:1", // never connected: no agent runs here
    flash: new Uint8Array(4096),
    id: "slots",
    main: LOADER_MAIN,
    files,
    filesystem: fs,
    autoRestart: false,
    micropython,
  });
}

/** `device`, each board closed after the file's tests: what every slot test file needs. */
export function boardsClosedAfter(
  micropython: MicroPythonRelease = DEFAULT_MICROPYTHON,
): (fs: DeviceFilesystem) => AgentDevice {
  const devices: AgentDevice[] = [];
  after(async () => {
    for (const d of devices) await d.close();
  });
  return (fs) => {
    const d = device(fs, micropython);
    devices.push(d);
    return d;
  };
}

/** Powers on with this main.py and resolves with how the run ended. */
export async function runOnce(d: AgentDevice, main: string): Promise<{ outcome: Outcome; output: string[] }> {
  d.fs.writeFile("/main.py", main);
  const from = d.output.length;
  const outcome = new Promise<Outcome>((resolve) => {
    const cut = (step: FsStep) => done({ cut: step });
    const end = (e: RunEnd) => done({ end: e });
    const done = (o: Outcome) => {
      d.off("powerCut", cut);
      d.off("ended", end);
      resolve(o);
    };
    d.on("powerCut", cut);
    d.on("ended", end);
  });
  // A run that ended keeps its worker (a fresh interpreter boots in it); a cut has stopped it.
  await d.powerOn();
  const o = await outcome;
  return { outcome: o, output: d.output.slice(from) };
}

/** The record as the loader reads it: the newest copy whose checksum holds (an independent reading). */
export function record(
  fs: DeviceFilesystem,
): { seq: number; active: string; prev: string; state: string } | undefined {
  let best: { seq: number; active: string; prev: string; state: string } | undefined;
  for (const i of [0, 1]) {
    const p = (fs.readFile(`/app/rec.${i}`) ?? Buffer.alloc(0)).toString("latin1").split(" ");
    if (p.length !== 7) continue;
    const sum = createHash("sha256").update(p.slice(0, 6).join(" ")).digest().subarray(0, 8).toString("hex");
    if (p[0] !== "mpota-slot/1" || `${sum}\n` !== p[6]) continue;
    const r = { seq: Number(p[1]), active: p[2] as string, prev: p[3] as string, state: p[4] as string };
    if (!best || r.seq > best.seq) best = r;
  }
  return best;
}

/** The app files of a slot (the manifest copy left out), path -> text. */
export function slotFiles(fs: DeviceFilesystem, slot: string): Record<string, string> {
  const out: Record<string, string> = {};
  const base = `/app/${slot}/`;
  for (const f of fs.files())
    if (f.startsWith(base) && f !== `${base}.manifest`)
      out[f.slice(base.length)] = (fs.readFile(f) as Buffer).toString();
  return out;
}

/** What an app calls once it works. */
export const confirmLine = "import mpota_loader\nmpota_loader.confirm()\n";
/** Two releases: 1.4.0 changes main.py and sensor.py, keeps lib/util.py, adds extra.py, drops old.py. */
export const OLD = release("1.3.0", {
  "main.py": `import sensor, util\n${confirmLine}print("running", "1.3.0", sensor.V, util.V)\n`,
  "sensor.py": 'V = "1.3.0"\n',
  "lib/util.py": 'V = "u1"\n',
  "old.py": 'V = "gone in 1.4.0"\n',
});
export const NEW = release("1.4.0", {
  "main.py": `import sensor, util, extra\n${confirmLine}print("running", "1.4.0", sensor.V, util.V, extra.V)\n`,
  "sensor.py": 'V = "1.4.0"\n',
  "lib/util.py": 'V = "u1"\n',
  "extra.py": 'V = "e1"\n',
});
/** What each app prints when all its modules are its own: a mix prints neither. */
export const RUNS_OLD = "running 1.3.0 1.3.0 u1";
export const RUNS_NEW = "running 1.4.0 1.4.0 u1 e1";

/** The lines of the app and the loader in a run's output. */
export const printed = (o: string[]): string[] =>
  o.filter((l) => l.startsWith("running") || l.includes("mpota_loader"));

/** A filesystem of this kind with OLD installed and confirmed through the same code (a first install). */
export async function withOld(
  kind: FilesystemKind | BoardProfile,
  board: (fs: DeviceFilesystem) => AgentDevice,
  capacity?: number,
): Promise<DeviceFilesystem> {
  const profile = typeof kind === "string" ? { ...ESP8266, fs: kind } : kind;
  const fs = new DeviceFilesystem({ kind: profile.fs, capacity: capacity ?? profile.capacity });
  const d = board(fs);
  assert.deepEqual((await runOnce(d, updateScript(OLD, "", profile))).output, [
    "staged ('thermostat', '1.3.0')",
  ]);
  assert.deepEqual((await runOnce(d, LOADER_MAIN)).output, [RUNS_OLD]);
  assert.deepEqual(record(fs), { seq: 3, active: "a", prev: "-", state: "ok" });
  await d.close();
  return fs;
}
