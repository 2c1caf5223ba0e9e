# A small MQTT 3.1.1 client with the API of MicroPython's umqtt.simple,
# written for mpota. Boards whose firmware has umqtt.simple frozen in (the
# 2 MiB+ ESP8266 builds) use that one; copy this file to /lib/umqtt/ on
# 1 MiB boards, or install the official one with mip.
#
# QoS 0 and 1 (no QoS 2). One packet is read at a time; wait_msg() and
# check_msg() hand PUBLISH messages to the callback as (topic, msg) bytes and
# return the packet's first byte (op & 1 is the retain flag).
import socket
import struct


class MQTTException(Exception):
    pass


def _field(x):
    # A length-prefixed string or bytes field.
    if isinstance(x, str):
        x = x.encode()
    return struct.pack("!H", len(x)) + x


def _remaining(n):
    # The variable-length "remaining length" of the fixed header.
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return out


class MQTTClient:
    def __init__(
        self,
        client_id,
        server,
        port=0,
        user=None,
        password=None,
        keepalive=0,
        ssl=None,
        ssl_params={},
    ):
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.ssl_params = ssl_params
        self.sock = None
        self.cb = None
        self.pid = 0
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self._ack = None

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not topic or qos < 0 or qos > 2:
            raise ValueError("bad last will")
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_retain = retain
        self.lw_qos = qos

    def _send(self, first, body):
        self.sock.write(bytes((first,)) + _remaining(len(body)) + body)

    def _read(self, n):
        b = self.sock.read(n)
        if not b or len(b) < n:
            raise OSError(-1)
        return b

    def connect(self, clean_session=True, timeout=None):
        if self.sock:
            self.sock.close()
        # timeout bounds every read while connected (None: each waits for
        # good), so a broker that stops answering fails the call (ETIMEDOUT).
        self.t = timeout
        s = self.sock = socket.socket()  # at once: a caller closes it if connect fails
        s.settimeout(timeout)
        s.connect(socket.getaddrinfo(self.server, self.port)[0][-1])
        if self.ssl is True:
            import ssl

            s = ssl.wrap_socket(s, **self.ssl_params)
        elif self.ssl:
            s = self.ssl.wrap_socket(s, server_hostname=self.server)
        self.sock = s
        flags = 2 if clean_session else 0
        tail = _field(self.client_id)
        if self.lw_topic:
            flags |= 4 | self.lw_qos << 3
            if self.lw_retain:
                flags |= 0x20
            tail += _field(self.lw_topic) + _field(self.lw_msg)
        if self.user:
            flags |= 0x80
            tail += _field(self.user)
            if self.pswd is not None:
                flags |= 0x40
                tail += _field(self.pswd)
        head = b"\0\4MQTT\4" + bytes((flags,)) + struct.pack("!H", self.keepalive)
        self._send(0x10, head + tail)
        r = self._read(4)
        if r[0] != 0x20 or r[1] != 2:
            raise MQTTException("no CONNACK")
        if r[3]:
            raise MQTTException(r[3])
        return r[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\0")
        self.sock.close()
        self.sock = None

    def ping(self):
        self.sock.write(b"\xc0\0")

    def _next_pid(self):
        self.pid = self.pid % 0xFFFF + 1
        return self.pid

    def _await(self, kind, pid):
        # Processes packets until the acknowledgement `kind` for `pid` arrives.
        self.sock.settimeout(self.t)
        while True:
            self.wait_msg()
            a = self._ack
            if a and a[0] == kind and a[1] == pid:
                self._ack = None
                return a[2]

    def publish(self, topic, msg, retain=False, qos=0):
        if qos not in (0, 1):
            raise ValueError("qos 0 or 1")
        if isinstance(msg, str):
            msg = msg.encode()
        body = _field(topic)
        if qos:
            pid = self._next_pid()
            body += struct.pack("!H", pid)
        self._send(0x30 | qos << 1 | (1 if retain else 0), body + msg)
        if qos:
            self._await(0x40, pid)

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise MQTTException("set_callback() before subscribe()")
        pid = self._next_pid()
        self._send(0x82, struct.pack("!H", pid) + _field(topic) + bytes((qos,)))
        if self._await(0x90, pid)[2] == 0x80:
            raise MQTTException(0x80)

    def unsubscribe(self, topic):
        pid = self._next_pid()
        self._send(0xA2, struct.pack("!H", pid) + _field(topic))
        self._await(0xB0, pid)

    def wait_msg(self):
        # Reads one packet. None when there is nothing (non-blocking socket)
        # or it was a PINGRESP; otherwise the packet's first byte.
        first = self.sock.read(1)
        self.sock.settimeout(self.t)
        if first is None:
            return None
        if not first:
            raise OSError(-1)
        op = first[0]
        n = 0
        shift = 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        body = self._read(n) if n else b""
        kind = op & 0xF0
        if kind == 0x30:
            tlen = body[0] << 8 | body[1]
            start = 2 + tlen
            qos = op >> 1 & 3
            if qos:
                pid = body[start : start + 2]
                start += 2
            self.cb(body[2 : 2 + tlen], body[start:])
            if qos == 1:
                self.sock.write(b"\x40\x02" + pid)
            elif qos:
                raise MQTTException("QoS 2 not supported")
        elif kind in (0x40, 0x90, 0xB0):
            self._ack = (kind, body[0] << 8 | body[1], body)
        elif kind == 0xD0:
            return None
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
