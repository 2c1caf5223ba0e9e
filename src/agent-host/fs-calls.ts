/** The device's VFS calls (`_mpota_host.fs_*`) answered from its {@link DeviceFilesystem}. */
import type { DeviceFilesystem } from "./device-filesystem.ts";
import { FsErrno, FsFailure } from "./fs-errno.ts";

/**
 * Answers one VFS call from the device (`_mpota_host.fs_<name>(*args)`):
 * its value, or -errno where the port raises OSError(errno). A
 * {@link PowerCut} passes through to the caller, which stops the device.
 */
export function serveFsCall(
  fs: DeviceFilesystem,
  name: string,
  args: ReadonlyArray<string | number>,
): string | number {
  const s = (i: number) => String(args[i] ?? "");
  const n = (i: number) => Number(args[i] ?? 0);
  try {
    switch (name) {
      case "open":
        return fs.open(s(0), s(1), s(2));
      case "read":
        return fs.read(n(0), n(1)).toString("hex");
      case "readline":
        return fs.readline(n(0), args.length > 1 ? n(1) : -1).toString("hex");
      case "write":
        return fs.write(n(0), Buffer.from(s(1), "hex"));
      case "seek":
        return fs.seek(n(0), n(1), n(2));
      case "flush":
        fs.flush(n(0));
        return 0;
      case "close":
        fs.close(n(0));
        return 0;
      case "stat": {
        const st = fs.stat(s(0), s(1));
        return `${st.mode},${st.size}`;
      }
      case "listdir":
        return JSON.stringify(fs.listdir(s(0), s(1)));
      case "remove":
        fs.remove(s(0), s(1));
        return 0;
      case "rmdir":
        fs.rmdir(s(0), s(1));
        return 0;
      case "mkdir":
        fs.mkdir(s(0), s(1));
        return 0;
      case "rename":
        fs.rename(s(0), s(1), s(2));
        return 0;
      case "chdir":
        return fs.chdir(s(0), s(1));
      case "statvfs":
        return JSON.stringify(fs.statvfs());
      default:
        return -FsErrno.EINVAL;
    }
  } catch (error) {
    if (error instanceof FsFailure) return -error.errno;
    throw error;
  }
}
