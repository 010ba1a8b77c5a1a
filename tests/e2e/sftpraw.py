"""A minimal SFTP v3 client speaking raw packets over a paramiko channel.

paramiko's SFTPClient hides the VERSION extensions, cannot send most
extended requests, decodes names as UTF-8 and never sends malformed
packets; this client does all of that, so tests can check exact statuses,
byte names and the server's handling of abuse.
"""

import socket
import struct

# Packet types.
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 1, 2, 3, 4, 5, 6, 7, 8
SETSTAT, FSETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, RMDIR = 9, 10, 11, 12, 13, 14, 15
REALPATH, STAT, RENAME, READLINK, SYMLINK = 16, 17, 18, 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

# Open flags.
FXF_READ, FXF_WRITE, FXF_APPEND = 0x01, 0x02, 0x04
FXF_CREAT, FXF_TRUNC, FXF_EXCL = 0x08, 0x10, 0x20

# Status codes.
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE = 0, 1, 2, 3, 4
BAD_MESSAGE, NO_CONNECTION, CONNECTION_LOST, OP_UNSUPPORTED = 5, 6, 7, 8

# Attribute flags.
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME = 0x1, 0x2, 0x4, 0x8
A_EXTENDED = 0x80000000


class SftpStatusError(Exception):
    """The server answered with a non-OK STATUS."""

    def __init__(self, code, message, req_id=None):
        super().__init__(f"SFTP status {code}: {message!r}")
        self.code = code
        self.message = message
        self.req_id = req_id


class SessionClosed(Exception):
    """The server ended the SFTP session (channel EOF/close)."""


def b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


def string(x):
    x = b(x)
    return u32(len(x)) + x


def attrs(size=None, uid_gid=None, perms=None, times=None):
    flags = 0
    out = b""
    if size is not None:
        flags |= A_SIZE
        out += u64(size)
    if uid_gid is not None:
        flags |= A_UIDGID
        out += u32(uid_gid[0]) + u32(uid_gid[1])
    if perms is not None:
        flags |= A_PERMISSIONS
        out += u32(perms)
    if times is not None:
        flags |= A_ACMODTIME
        out += u32(times[0]) + u32(times[1])
    return u32(flags) + out


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short reply from server")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def string(self):
        return self.take(self.u32())

    def rest(self):
        return self.take(len(self.data) - self.pos)

    def attrs(self):
        flags = self.u32()
        a = {"flags": flags}
        if flags & A_SIZE:
            a["size"] = self.u64()
        if flags & A_UIDGID:
            a["uid"] = self.u32()
            a["gid"] = self.u32()
        if flags & A_PERMISSIONS:
            a["perms"] = self.u32()
        if flags & A_ACMODTIME:
            a["atime"] = self.u32()
            a["mtime"] = self.u32()
        if flags & A_EXTENDED:
            a["extended"] = [(self.string(), self.string()) for _ in range(self.u32())]
        return a


class RawSftp:
    """One SFTP session on one SSH channel."""

    def __init__(self, chan, timeout=30):
        self.chan = chan
        self.chan.settimeout(timeout)
        self.buf = b""
        self.next_id = 1
        self.version = None
        self.extensions = {}

    @classmethod
    def open(cls, transport, init=True, timeout=30):
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.invoke_subsystem("sftp")
        s = cls(chan, timeout)
        if init:
            s.init()
        return s

    def close(self):
        try:
            self.chan.close()
        except Exception:
            pass

    # ---- framing -------------------------------------------------------
    def send_raw(self, data):
        self.chan.sendall(data)

    def send_packet(self, ptype, payload):
        self.send_raw(u32(len(payload) + 1) + bytes([ptype]) + payload)

    def _fill(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.chan.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("no reply from the server in time")
            if not chunk:
                raise SessionClosed("server closed the SFTP session")
            self.buf += chunk

    def recv_packet(self):
        """(type, payload) of the next packet."""
        self._fill(4)
        length = struct.unpack(">I", self.buf[:4])[0]
        assert 1 <= length <= 16 << 20, f"absurd reply length {length}"
        self._fill(4 + length)
        pkt = self.buf[4:4 + length]
        self.buf = self.buf[4 + length:]
        return pkt[0], pkt[1:]

    def wait_closed(self, timeout=10):
        """True if the server ends the session within `timeout` seconds
        (anything it sends meanwhile is discarded)."""
        self.chan.settimeout(timeout)
        try:
            while True:
                chunk = self.chan.recv(1 << 20)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except (EOFError, OSError):
            return True

    # ---- requests ------------------------------------------------------
    def init(self, version=3):
        self.send_packet(INIT, u32(version))
        t, body = self.recv_packet()
        assert t == VERSION, f"expected VERSION, got packet type {t}"
        r = Reader(body)
        self.version = r.u32()
        while r.pos < len(body):
            name = r.string()
            self.extensions[name.decode("utf-8", "replace")] = r.string()
        return self.version, self.extensions

    def send(self, ptype, payload):
        """Send a request with a fresh id; return the id."""
        rid = self.next_id
        self.next_id += 1
        self.send_packet(ptype, u32(rid) + payload)
        return rid

    def recv_reply(self):
        """(type, id, Reader over the rest) of the next reply."""
        t, body = self.recv_packet()
        r = Reader(body)
        rid = r.u32()
        return t, rid, r

    def call(self, ptype, payload):
        rid = self.send(ptype, payload)
        t, got, r = self.recv_reply()
        assert got == rid, f"reply id {got} for request {rid}"
        return t, r

    @staticmethod
    def check_status(t, r, rid=None):
        assert t == STATUS, f"expected STATUS, got packet type {t}"
        code = r.u32()
        msg = r.string() if r.pos < len(r.data) else b""
        if code != OK:
            raise SftpStatusError(code, msg.decode("utf-8", "replace"), rid)

    def status_call(self, ptype, payload):
        t, r = self.call(ptype, payload)
        self.check_status(t, r)

    def _expect(self, t, r, want):
        if t == STATUS:
            self.check_status(t, r)
            raise AssertionError(f"STATUS OK where packet type {want} was expected")
        assert t == want, f"expected packet type {want}, got {t}"

    def handle_call(self, ptype, payload):
        t, r = self.call(ptype, payload)
        self._expect(t, r, HANDLE)
        return r.string()

    def name_call(self, ptype, payload):
        t, r = self.call(ptype, payload)
        self._expect(t, r, NAME)
        return [(r.string(), r.string(), r.attrs()) for _ in range(r.u32())]

    def attrs_call(self, ptype, payload):
        t, r = self.call(ptype, payload)
        self._expect(t, r, ATTRS)
        return r.attrs()

    # Convenience wrappers.
    def open_file(self, path, pflags, a=None):
        return self.handle_call(OPEN, string(path) + u32(pflags) + (a or attrs()))

    def close_handle(self, h):
        self.status_call(CLOSE, string(h))

    def read(self, h, offset, length):
        """Bytes read, or None at EOF."""
        t, r = self.call(READ, string(h) + u64(offset) + u32(length))
        if t == STATUS:
            code = r.u32()
            if code == EOF:
                return None
            msg = r.string()
            raise SftpStatusError(code, msg.decode("utf-8", "replace"))
        assert t == DATA, f"expected DATA, got packet type {t}"
        return r.string()

    def write(self, h, offset, data):
        self.status_call(WRITE, string(h) + u64(offset) + string(data))

    def stat(self, path):
        return self.attrs_call(STAT, string(path))

    def lstat(self, path):
        return self.attrs_call(LSTAT, string(path))

    def fstat(self, h):
        return self.attrs_call(FSTAT, string(h))

    def setstat(self, path, a):
        self.status_call(SETSTAT, string(path) + a)

    def realpath(self, path):
        return self.name_call(REALPATH, string(path))[0][0]

    def readlink(self, path):
        return self.name_call(READLINK, string(path))[0][0]

    def symlink(self, target, link):
        # OpenSSH argument order: target first, then the link path.
        self.status_call(SYMLINK, string(target) + string(link))

    def opendir(self, path):
        return self.handle_call(OPENDIR, string(path))

    def listdir(self, path):
        """(entries, number of NAME pages) of a whole directory."""
        h = self.opendir(path)
        out, pages = [], 0
        try:
            while True:
                t, r = self.call(READDIR, string(h))
                if t == STATUS:
                    code = r.u32()
                    if code == EOF:
                        break
                    raise SftpStatusError(code, r.string().decode("utf-8", "replace"))
                assert t == NAME, f"expected NAME, got packet type {t}"
                pages += 1
                n = r.u32()
                assert n > 0, "empty NAME page (should be EOF instead)"
                out.extend((r.string(), r.string(), r.attrs()) for _ in range(n))
        finally:
            self.close_handle(h)
        return out, pages

    def extended(self, name, payload=b""):
        """(type, Reader) of the reply to an extended request."""
        return self.call(EXTENDED, string(name) + payload)

    def extended_status(self, name, payload=b""):
        t, r = self.extended(name, payload)
        self.check_status(t, r)

    def extended_reply(self, name, payload=b""):
        t, r = self.extended(name, payload)
        self._expect(t, r, EXTENDED_REPLY)
        return r

    def statvfs(self, path):
        return self._statvfs(self.extended_reply("statvfs@openssh.com", string(path)))

    def fstatvfs(self, h):
        return self._statvfs(self.extended_reply("fstatvfs@openssh.com", string(h)))

    @staticmethod
    def _statvfs(r):
        keys = ["bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree",
                "favail", "fsid", "flag", "namemax"]
        return {k: r.u64() for k in keys}

    def limits(self):
        r = self.extended_reply("limits@openssh.com")
        return {k: r.u64() for k in ["max_packet", "max_read", "max_write", "max_handles"]}
