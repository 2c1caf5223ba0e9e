# mpota's HTTP GET for app updates (contract v3, op app): one request on a
# plain socket (TLS when the url says https), Basic auth with the device's
# MQTT credential, the status line and headers read with a bound on each.
# Imported only while an update runs. See README.md.
import socket
from binascii import b2a_base64

TIMEOUT = 20  # s without a byte from the server: the try is over


class Refused(Exception):
    # The server will not give this release (HTTP 401/403/404/410) or sends
    # something else than asked: trying again cannot help.
    pass


def _line(s):
    # One header line, at most 512 bytes: a server cannot make the board
    # buffer more (readline(limit) is not on every socket).
    b = bytearray()
    while len(b) < 512:
        c = s.read(1)
        if not c:
            break
        b += c
        if c == b"\n":
            return bytes(b)
    if b:
        raise OSError("an HTTP header line over 512 bytes")
    return b""


def get(url, user, password):
    # GET url; returns (socket, Content-Length) of a 200 answer, its headers
    # read, the body next. The caller closes the socket. Raises Refused for
    # an answer trying again cannot change, OSError for the rest.
    x = url.split("/", 3)
    hp = x[2]
    tls = x[0] == "https:"
    host, port = hp, 443 if tls else 80
    if ":" in hp:
        host, port = hp.rsplit(":", 1)
        port = int(port)
    auth = b2a_base64(("%s:%s" % (user, password or "")).encode())[:-1].decode()
    s = socket.socket()
    try:
        s.settimeout(TIMEOUT)
        s.connect(socket.getaddrinfo(host, port)[0][-1])
        if tls:
            # No certificate check: every byte is checked against the signed manifest.
            import ssl

            s = ssl.wrap_socket(s, server_hostname=host)
        q = "GET /%s HTTP/1.0\r\nHost: %s\r\nAuthorization: Basic %s\r\n\r\n" % (x[3] if len(x) > 3 else "", hp, auth)
        s.write(q.encode())
        st = _line(s).split(None, 2)
        code = int(st[1]) if len(st) > 1 and st[1].isdigit() else 0
        n = None
        for i in range(41):
            line = _line(s)
            if not line or line == b"\r\n":
                break
            if i == 40:
                raise OSError("more than 40 HTTP header lines")
            k, _, v = line.decode().partition(":")
            if k.strip().lower() == "content-length":
                n = int(v)
        if code in (401, 403, 404, 410):
            raise Refused("the server refused %s: HTTP %d %s" % (url[url.rfind("/", 0, url.rfind("/")) :], code, st[-1].decode().strip()))
        if code != 200:
            raise OSError("HTTP %d" % code)  # busy or broken: try again later
        if n is None:
            raise Refused("the server sent no Content-Length")
        return s, n
    except BaseException:
        s.close()
        raise
