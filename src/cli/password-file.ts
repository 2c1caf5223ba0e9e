import { readFileSync } from "node:fs";
import { FileError } from "../errors.ts";

/**
 * A password kept in a file (`--mqtt-password-file`): its first line, without
 * the line end. A password on the command line shows in `ps` to every user
 * of the machine; a file can be mode 0600.
 */
export function readPasswordFile(path: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new FileError(
      code === "ENOENT"
        ? `${option} ${path}: the file does not exist.`
        : code === "EACCES"
          ? `${option} ${path}: no permission to read it (run as the user who owns it).`
          : `${option} ${path} cannot be read: ${(error as Error).message}`,
    );
  }
  const password = (text.split(/\r?\n/, 1)[0] ?? "").trim();
  if (password === "")
    throw new FileError(`${option} ${path}: the file's first line is empty; put the password there.`);
  return password;
}
