/**
 * The device's filesystem as a user VFS mounted at "/": every call goes to
 * the host's DeviceFilesystem (src/agent-host/device-filesystem.ts), which
 * outlives the interpreter, so files survive resets, deep sleeps and power
 * cuts with the durability of LittleFS or FAT. Host calls return their
 * value, or -errno where the port's C code raises OSError(errno)
 * (the conventions of `_mpota_host` in python-fakes.ts).
 */
const filesystem = `import io
import json
import _mpota_host as _h
from binascii import hexlify, unhexlify


def _c(r):
    if isinstance(r, int) and r < 0:
        raise OSError(-r)
    return r


class FileIO(io.IOBase):
    def __init__(self, fd, text):
        self._fd = fd
        self._text = text

    def _out(self, r):
        d = unhexlify(_c(r))
        return d.decode() if self._text else d

    def read(self, n=-1):
        return self._out(_h.fs_read(self._fd, -1 if n is None else n))

    def readinto(self, buf):
        d = unhexlify(_c(_h.fs_read(self._fd, len(buf))))
        buf[: len(d)] = d
        return len(d)

    def readline(self, n=-1):
        return self._out(_h.fs_readline(self._fd, -1 if n is None else n))

    def readlines(self):
        return list(self)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def write(self, b):
        if isinstance(b, str):
            b = b.encode()
        return _c(_h.fs_write(self._fd, hexlify(b).decode()))

    def seek(self, offset, whence=0):
        return _c(_h.fs_seek(self._fd, offset, whence))

    def tell(self):
        return self.seek(0, 1)

    def flush(self):
        _c(_h.fs_flush(self._fd))

    def close(self):
        _c(_h.fs_close(self._fd))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ioctl(self, req, arg):
        if req == 1:  # MP_STREAM_FLUSH
            self.flush()
            return 0
        if req == 4:  # MP_STREAM_CLOSE
            self.close()
            return 0
        if req == 11:  # MP_STREAM_GET_BUFFER_SIZE
            return 2048
        return -1


class HostFS:
    def __init__(self):
        self._cwd = "/"

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        return FileIO(_c(_h.fs_open(self._cwd, path, mode)), "b" not in mode)

    def stat(self, path):
        m, s = _c(_h.fs_stat(self._cwd, path)).split(",")
        return (int(m), 0, 0, 0, 0, 0, int(s), 0, 0, 0)

    def ilistdir(self, path):
        for name, kind, size in json.loads(_c(_h.fs_listdir(self._cwd, path))):
            yield (name, kind, 0, size)

    def remove(self, path):
        _c(_h.fs_remove(self._cwd, path))

    def rmdir(self, path):
        _c(_h.fs_rmdir(self._cwd, path))

    def mkdir(self, path):
        _c(_h.fs_mkdir(self._cwd, path))

    def rename(self, old, new):
        _c(_h.fs_rename(self._cwd, old, new))

    def chdir(self, path):
        self._cwd = _c(_h.fs_chdir(self._cwd, path))

    def getcwd(self):
        return self._cwd

    def statvfs(self, path):
        return tuple(json.loads(_c(_h.fs_statvfs())))
`;

/** The user VFS the worker mounts at "/" (see {@link filesystem}). */
export const FILESYSTEM_MODULE = { path: "lib/_mpota_fs.py", source: filesystem } as const;
