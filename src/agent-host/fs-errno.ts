/** How the simulated device's filesystem fails: the OSError numbers the port raises. */

/** OSError numbers of MicroPython's ports (py/mperrno.h). */
export const FsErrno = {
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTEMPTY: 39,
} as const;

/** A failed operation: the OSError number the device sees. */
export class FsFailure extends Error {
  constructor(readonly errno: number) {
    super(`OSError ${errno}`);
  }
}
