import { AppReleaseError } from "./app-errors.ts";
import type { AppFolderFile } from "./app-folder.ts";

/** The MicroPython that compiles a release's `.py` files (the wasm build mpota depends on). */
const MICROPYTHON_PACKAGE: string = "@micropython/micropython-webassembly-pyscript";

interface MicroPython {
  runPython(code: string): unknown;
  globals: { get(name: string): unknown };
  FS: { writeFile(path: string, data: Uint8Array): void; unlink(path: string): void };
}

/** Compiles the file at /check.py as `path`; "" when it compiles, else the first error's "line N: message". */
const CHECKER = `
import io, sys
def _check(path):
    try:
        with open("/check.py") as f:
            compile(f.read(), path, "exec")
        return ""
    except Exception as e:
        b = io.StringIO()
        sys.print_exception(e, b)
        at = ""
        last = ""
        for t in b.getvalue().split("\\n"):
            t = t.strip()
            if t.startswith('File "%s", line ' % path):
                at = t.split(", line ")[1].split(",")[0]
            elif t and not t.startswith("Traceback") and not t.startswith("File "):
                last = t
        return ("line %s: " % at if at else "") + last
`;

let interpreter: Promise<MicroPython> | undefined;

/** One interpreter per process, made at the first check (about 40 ms) and kept: checks run one file at a time. */
function micropython(): Promise<MicroPython> {
  interpreter ??= (async () => {
    const { loadMicroPython } = (await import(MICROPYTHON_PACKAGE)) as {
      loadMicroPython: (options: object) => Promise<MicroPython>;
    };
    const mp = await loadMicroPython({ stdout: () => undefined, stderr: () => undefined });
    mp.runPython(CHECKER);
    return mp;
  })();
  return interpreter;
}

/**
 * The `.py` files of a release that MicroPython cannot compile, each as
 * "path: line N: message". A board would fail to import such a file: the
 * loader rolls back a `main.py` that does not compile, but a module imported
 * later fails only when it is used, after the app was confirmed.
 */
export async function pythonProblems(files: readonly AppFolderFile[]): Promise<string[]> {
  const sources = files.filter((f) => f.path.endsWith(".py"));
  if (sources.length === 0) return [];
  const mp = await micropython();
  const problems: string[] = [];
  for (const f of sources) {
    mp.FS.writeFile("/check.py", f.bytes);
    // The path goes in as a Python string literal: JSON's escapes are Python's for these characters.
    mp.runPython(`_problem = _check(${JSON.stringify(f.path)})`);
    const problem = String(mp.globals.get("_problem") ?? "");
    if (problem) problems.push(`${f.path}: ${problem}`);
  }
  mp.FS.unlink("/check.py");
  return problems;
}

/** Refuses a release with a `.py` file MicroPython cannot compile, naming each file and line; `skip` says how to go without the check. */
export async function checkPythonSources(files: readonly AppFolderFile[], skip?: string): Promise<void> {
  const problems = await pythonProblems(files);
  if (problems.length === 0) return;
  const shown = problems.slice(0, 5);
  throw new AppReleaseError(
    `${problems.length === 1 ? "A .py file does" : `${problems.length} .py files do`} not compile under MicroPython 1.27: ${shown.join("; ")}${problems.length > shown.length ? `; and ${problems.length - shown.length} more` : ""}. A board would fail to import ${problems.length === 1 ? "it" : "them"}: fix ${problems.length === 1 ? "the file" : "the files"} and add the release again${skip ? ` (${skip})` : ""}.`,
  );
}
