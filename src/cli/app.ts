import { type Command, Option } from "commander";
import { AppReleaseError } from "../apps/app-errors.ts";
import { readAppFolder } from "../apps/app-folder.ts";
import { type AppKey, appPublicPem, defaultAppKeyPath, loadAppKey } from "../apps/app-key.ts";
import { APP_BOARDS, parseAppBoards, type SignedAppManifest } from "../apps/app-manifest.ts";
import { signAppManifest, verifyAppManifest } from "../apps/app-signature.ts";
import {
  appStoreDir,
  damagedAppFiles,
  listAppReleases,
  readAppRelease,
  storeAppRelease,
} from "../apps/app-store.ts";
import { archName, mpyNeed } from "../apps/mpy-header.ts";
import { checkPythonSources } from "../apps/python-check.ts";
import { formatTable, sizeBrief, sizeText } from "../firmware/format.ts";
import { DEFAULT_DATA_DIR } from "../server/server-options.ts";
import type { CliIo } from "./io.ts";

interface DataOptions {
  data: string;
  json?: boolean;
}

interface KeyOptions extends DataOptions {
  key?: string;
}

interface AddOptions extends KeyOptions {
  name: string;
  version: string;
  board: string;
  /** False with --no-compile-check. */
  compileCheck: boolean;
}

const dataOption = () =>
  new Option("--data <dir>", "the data directory (its apps/ folder is the store)")
    .env("MPOTA_DATA")
    .default(DEFAULT_DATA_DIR);
const keyOption = () =>
  new Option(
    "--key <file>",
    "the app signing key (PEM, RSA, e = 65537); default: app-key.pem in the data directory",
  );

function mpyText(m: SignedAppManifest): string {
  if (m.mpy === undefined) return "-";
  return m.mpy.arch === 0
    ? `${m.mpy.version}`
    : `${m.mpy.version}.${m.mpy.subVersion} ${archName(m.mpy.arch)}`;
}

function summary(m: SignedAppManifest) {
  return {
    name: m.name,
    version: m.version,
    id: m.id,
    kid: m.kid,
    boards: m.boards,
    mpy: m.mpy ?? null,
    files: m.files.length,
    bytes: m.total,
  };
}

async function appAdd(dir: string, options: AddOptions, io: CliIo): Promise<void> {
  const boards = parseAppBoards(options.board);
  const folder = readAppFolder(dir);
  if (options.compileCheck)
    await checkPythonSources(
      folder.files,
      "or pass --no-compile-check for .py files that are not MicroPython source",
    );
  const key: AppKey = loadAppKey(options.key ?? defaultAppKeyPath(options.data), {
    create: options.key === undefined,
  });
  if (key.warning) io.err(`warning: ${key.warning}\n`);
  const manifest = signAppManifest(
    {
      name: options.name,
      version: options.version,
      boards,
      mpy: mpyNeed(folder.mpy),
      files: folder.files.map((f) => ({ path: f.path, size: f.bytes.length, sha256: f.sha256 })),
    },
    key.privateKey,
  );
  const contents = new Map(folder.files.map((f) => [f.sha256, f.bytes] as const));
  const result = storeAppRelease(options.data, manifest, contents);
  if (options.json) {
    io.out(
      `${JSON.stringify({ ...summary(manifest), state: result.state, skipped: folder.skipped }, null, 2)}\n`,
    );
    return;
  }
  const lines: string[] = [];
  if (key.created) {
    lines.push(
      `Made a new app key ${key.kid} at ${key.path} (mode 0600; keep it secret: it signs the code every board runs).`,
      "Boards take only releases signed by a key in their APP_KEYS: `mpota app key` prints its modulus.",
    );
  }
  if (result.state === "unchanged") {
    lines.push(
      `${manifest.name} ${manifest.version} is stored already with these very files (release ${manifest.id.slice(0, 12)}): nothing changed.`,
    );
  } else {
    lines.push(
      `Added ${manifest.name} ${manifest.version}: ${manifest.files.length} file${manifest.files.length === 1 ? "" : "s"}, ${sizeText(manifest.total)}, for ${manifest.boards.join(", ")}; .mpy ${mpyText(manifest) === "-" ? "none" : `version ${mpyText(manifest)}`}.`,
      `Release ${manifest.id.slice(0, 12)}, signed with app key ${key.kid} (${key.path}).`,
      `Stored ${result.filesWritten} new file${result.filesWritten === 1 ? "" : "s"} (${sizeBrief(result.bytesWritten)}) in ${appStoreDir(options.data)}${result.filesWritten < manifest.files.length ? "; the others were there already" : ""}.`,
    );
  }
  if (folder.skipped.length > 0) lines.push(`Left out: ${folder.skipped.join(", ")}`);
  io.out(`${lines.join("\n")}\n`);
}

function appList(options: DataOptions, io: CliIo): void {
  const all = listAppReleases(options.data);
  if (options.json) {
    const rows = all.map((r) =>
      r.manifest ? summary(r.manifest) : { name: r.name, version: r.version, damaged: r.damaged },
    );
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (all.length === 0) {
    io.out("No app releases are stored. Add one with `mpota app add DIR --name NAME --version VERSION`.\n");
    return;
  }
  const rows = [["NAME", "VERSION", "RELEASE", "FILES", "SIZE", "MPY", "BOARDS", "KEY"]];
  for (const r of all) {
    const m = r.manifest;
    rows.push(
      m
        ? [
            m.name,
            m.version,
            m.id.slice(0, 12),
            String(m.files.length),
            String(m.total),
            mpyText(m),
            m.boards.join(","),
            m.kid,
          ]
        : [r.name, r.version, "damaged", "-", "-", "-", "-", "-"],
    );
  }
  io.out(formatTable(rows, { header: true }));
}

function appShow(ref: string, options: KeyOptions, io: CliIo): void {
  const stored = readAppRelease(options.data, ref);
  const keyPath = options.key ?? defaultAppKeyPath(options.data);
  const key = loadAppKey(keyPath, { create: false });
  const manifest = verifyAppManifest(stored.bytes, [key.privateKey]);
  const damaged = damagedAppFiles(options.data, manifest);
  if (options.json) {
    io.out(`${JSON.stringify({ ...summary(manifest), paths: manifest.files, damaged }, null, 2)}\n`);
  } else {
    const rows = [
      ["PATH", "SIZE", "SHA-256"],
      ...manifest.files.map((f) => [f.path, String(f.size), f.sha256]),
    ];
    io.out(
      `${manifest.name} ${manifest.version}, release ${manifest.id}\n` +
        `  signed by app key ${manifest.kid}: the signature verifies\n` +
        `  boards ${manifest.boards.join(", ")}; .mpy ${mpyText(manifest)}\n` +
        `  ${manifest.files.length} files, ${sizeText(manifest.total)}\n${formatTable(rows, { header: true, indent: "  " })}`,
    );
  }
  if (damaged.length > 0) {
    throw new AppReleaseError(
      `The store's copy of ${manifest.name} ${manifest.version} is damaged: ${damaged.map((d) => `${d.path} is ${d.problem}`).join("; ")}. Add the release again from its folder (\`mpota app add\` rewrites missing or damaged files).`,
    );
  }
}

function appKey(options: KeyOptions, io: CliIo): void {
  const key = loadAppKey(options.key ?? defaultAppKeyPath(options.data), { create: false });
  if (options.json) {
    io.out(`${JSON.stringify({ kid: key.kid, modulus: key.modulusHex, path: key.path }, null, 2)}\n`);
    return;
  }
  io.out(`${key.modulusHex}\n`);
  io.err(
    `app key ${key.kid} (${key.path}); put the modulus above into APP_KEYS of each board's mpota_config.py\n${appPublicPem(key)}`,
  );
}

/** `mpota app add|list|show|key`: signed releases of a board's Python files. */
export function registerAppCommand(program: Command, io: CliIo): void {
  const app = program
    .command("app")
    .description("App releases: a board's Python files, checked and signed once, stored by digest.");
  app
    .command("add")
    .description("check a folder of app files and store it as a signed release")
    .argument("<dir>", "the folder that holds the app's files (.py, .mpy, data)")
    .requiredOption("--name <name>", "the app, e.g. thermostat")
    .requiredOption("--version <version>", "numbers joined by dots, e.g. 1.4.0")
    .option(
      "--board <kinds>",
      `board kinds it suits, as sys.platform names them (${APP_BOARDS.join(", ")})`,
      APP_BOARDS.join(","),
    )
    .option("--no-compile-check", "store .py files that MicroPython 1.27 cannot compile (by default refused)")
    .addOption(keyOption())
    .addOption(dataOption())
    .option("--json", "print the release as JSON")
    .action(async (dir: string, options: AddOptions) => {
      await appAdd(dir, options, io);
    });
  app
    .command("list", { isDefault: true })
    .description("list the stored releases (the default)")
    .addOption(dataOption())
    .option("--json", "print JSON")
    .action((options: DataOptions) => appList(options, io));
  app
    .command("show")
    .description("one release's manifest: its files and digests; checks the signature and the stored files")
    .argument("<release>", "name@version, or name for the newest version")
    .addOption(keyOption())
    .addOption(dataOption())
    .option("--json", "print JSON")
    .action((ref: string, options: KeyOptions) => appShow(ref, options, io));
  app
    .command("key")
    .description(
      "print the app key's modulus (hex, for a board's APP_KEYS); its id and public PEM go to stderr",
    )
    .addOption(keyOption())
    .addOption(dataOption())
    .option("--json", "print JSON")
    .action((options: KeyOptions) => appKey(options, io));
}
