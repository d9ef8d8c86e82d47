"""The simulator's end of the socket between QEMU's ``virtio-mmio-cosim`` device and the RTL.

Every message is a 24-byte little-endian header ``(type, size, addr, data)`` (``<IIQQ``);
MEM_WRITE and MEM_DATA carry ``size`` payload bytes after it.

* QEMU -> simulator: MMIO_READ / MMIO_WRITE (``addr`` = offset in the slot, ``size`` = access
  bytes, ``data`` = value written). The vCPU waits for READ_DATA / WRITE_ACK: accesses are
  non-posted, one at a time.
* QEMU -> simulator: MARK (``data`` = the word the guest wrote to the marker page at
  ``setup.MARK_BASE``, ``addr`` = its offset there); QEMU waits for MARK_ACK. The guest's /init
  uses it to delimit the phases of its workload, and to ask the simulation for device-side
  events (:data:`MARK_CONFIG_CHANGE`).
* simulator -> QEMU: READ_DATA / WRITE_ACK / MARK_ACK; MEM_READ (QEMU answers MEM_DATA) and
  MEM_WRITE (QEMU answers MEM_ACK) on guest-physical memory; IRQ (``data`` = line level, no
  answer); MSI_WRITE (``addr``, ``size`` = 4, ``data`` = the word): one message of the
  endpoint's MSI manager port, which QEMU writes into the guest's physical address space with
  the device's requester ID (the ITS's DeviceID) and answers with MSI_DONE, ``data`` = QEMU's
  MemTxResult (0 = OK; anything else: the guest's memory system refused the write).

QEMU serves MEM_* and IRQ while one of its own accesses waits, so the simulator may start a
guest-memory exchange at any time; an MMIO request that arrives while the simulator waits for a
MEM_* answer is kept and handed out by :meth:`Link.next_request` afterwards.
"""

import collections
import enum
import os
import select
import socket
import struct
from dataclasses import dataclass


__all__ = ["Message", "MmioRequest", "Mark", "LinkClosed", "LinkTimeout", "Link", "HEADER",
           "MARK_CONFIG_CHANGE", "MARK_MSI_ERROR_PROBE", "MSI_PROBE_ADDRESS", "MEMTX_OK"]

HEADER = struct.Struct("<IIQQ")
#: Largest guest-memory transfer one message may carry (the QEMU side's limit).
MAX_TRANSFER = 1 << 20
#: QEMU's MemTxResult of a write that completed.
MEMTX_OK = 0
#: A marker word that asks the simulation to raise a configuration-change event (vector 0)
#: before it answers the MARK (guest/init writes it as ``mark 192``).
MARK_CONFIG_CHANGE = 0xC0
#: A marker word (``mark 224``, written once no driver owns the device) that asks the
#: simulation to program MSI vector 0 itself with :data:`MSI_PROBE_ADDRESS`, enable MSI, raise
#: a configuration-change event and reset the device: the message must come back refused.
MARK_MSI_ERROR_PROBE = 0xE0
#: A guest-physical address nothing decodes on the virt machine (between the virtio-mmio slots
#: and the platform bus, beside the marker page): QEMU answers a write there with an error.
MSI_PROBE_ADDRESS = 0x0A02_0000


class Message(enum.IntEnum):
    MMIO_READ = 1
    MMIO_WRITE = 2
    READ_DATA = 3
    WRITE_ACK = 4
    MEM_READ = 5
    MEM_WRITE = 6
    MEM_DATA = 7
    MEM_ACK = 8
    IRQ = 9
    MSI_WRITE = 10
    MSI_DONE = 11
    MARK = 12
    MARK_ACK = 13


@dataclass(frozen=True)
class MmioRequest:
    write: bool
    offset: int
    size: int
    data: int = 0

    def __str__(self):
        if self.write:
            return f"write {self.offset:#05x} <- {self.data:#x} ({self.size} B)"
        return f"read {self.offset:#05x} ({self.size} B)"


@dataclass(frozen=True)
class Mark:
    """A word the guest wrote to the marker page; answer it with :meth:`Link.reply_mark`."""
    value: int
    offset: int = 0

    def __str__(self):
        return f"mark {self.value}"


class LinkClosed(Exception):
    """QEMU closed the connection (it exited)."""


class LinkTimeout(Exception):
    """QEMU did not answer in time."""


class Link:
    """A connected socket to QEMU, with counters of what crossed it."""

    def __init__(self, sock, *, reply_timeout=60.0):
        self.sock = sock
        self.reply_timeout = reply_timeout
        self._pending = collections.deque()
        self._buffer = bytearray()
        self.irq_level = 0
        self.counts = collections.Counter()
        self.closed = False

    # ------------------------------------------------------------------ connection

    @staticmethod
    def listen(path):
        """A listening UNIX socket at ``path`` (an old file there is removed)."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        return server

    @classmethod
    def accept(cls, server, timeout, **kwargs):
        server.settimeout(timeout)
        try:
            sock, _ = server.accept()
        except socket.timeout:
            raise LinkTimeout(f"QEMU did not connect within {timeout:.0f} s") from None
        sock.settimeout(None)
        return cls(sock, **kwargs)

    def close(self):
        self.closed = True
        self.sock.close()

    # ------------------------------------------------------------------ framing

    def _fill(self, count, timeout):
        while len(self._buffer) < count:
            if timeout is not None:
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if not ready:
                    return False
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                raise LinkClosed("QEMU closed the connection")
            self._buffer += chunk
        return True

    def _receive(self, timeout):
        """The next message as ``(type, size, addr, data, payload)``; None if the header did not
        start to arrive within ``timeout`` seconds (None = wait for ever)."""
        if not self._buffer and timeout is not None:
            if not self._fill(1, timeout):
                return None
        self._fill(HEADER.size, self.reply_timeout)
        kind, size, addr, data = HEADER.unpack_from(self._buffer)
        payload_size = size if kind == Message.MEM_DATA else 0
        total = HEADER.size + payload_size
        if not self._fill(total, self.reply_timeout):
            raise LinkTimeout("QEMU stopped in the middle of a message")
        payload = bytes(self._buffer[HEADER.size:total])
        del self._buffer[:total]
        try:
            kind = Message(kind)
        except ValueError:
            raise ValueError(f"Unknown message type {kind} from QEMU") from None
        return kind, size, addr, data, payload

    def _send(self, kind, size=0, addr=0, data=0, payload=b""):
        self.sock.sendall(HEADER.pack(kind, size, addr, data) + payload)

    def _stash_or_fail(self, message, expected):
        kind, size, addr, data, _ = message
        if kind in (Message.MMIO_READ, Message.MMIO_WRITE):
            self._pending.append(MmioRequest(kind == Message.MMIO_WRITE, addr, size, data))
            self.counts["mmio_write" if kind == Message.MMIO_WRITE else "mmio_read"] += 1
            return
        if kind == Message.MARK:
            self._pending.append(Mark(data & 0xFFFF_FFFF, addr))
            self.counts["mark"] += 1
            return
        raise ValueError(f"QEMU sent {kind.name} while the simulator waited for {expected}")

    def _await_reply(self, expected):
        while True:
            message = self._receive(self.reply_timeout)
            if message is None:
                raise LinkTimeout(f"QEMU did not answer with {expected.name} within "
                                  f"{self.reply_timeout:.0f} s")
            if message[0] == expected:
                return message
            self._stash_or_fail(message, expected.name)

    # ------------------------------------------------------------------ API

    def next_request(self, timeout):
        """The next MMIO access (:class:`MmioRequest`) or :class:`Mark` from the guest; None if
        none arrived within ``timeout`` seconds (0 = just look)."""
        if self._pending:
            return self._pending.popleft()
        message = self._receive(timeout)
        if message is None:
            return None
        self._stash_or_fail(message, "an MMIO request")
        return self._pending.popleft()

    def reply_read(self, value):
        self._send(Message.READ_DATA, data=value)

    def reply_write(self):
        self._send(Message.WRITE_ACK)

    def reply_mark(self):
        self._send(Message.MARK_ACK)

    def msi_write(self, addr, data):
        """One MSI message: QEMU writes the 32-bit ``data`` to guest-physical ``addr`` with the
        device's requester ID. Returns QEMU's MemTxResult (:data:`MEMTX_OK` = delivered)."""
        if not 0 <= addr < 1 << 64:
            raise ValueError(f"addr must be a 64-bit address, not {addr!r}")
        self._send(Message.MSI_WRITE, size=4, addr=addr, data=data & 0xFFFF_FFFF)
        _, _, _, result, _ = self._await_reply(Message.MSI_DONE)
        self.counts["msi_write"] += 1
        if result != MEMTX_OK:
            self.counts["msi_refused"] += 1
        return result

    def mem_read(self, addr, count):
        """``count`` bytes of guest memory at guest-physical ``addr``."""
        if not 0 < count <= MAX_TRANSFER:
            raise ValueError(f"count must be 1..{MAX_TRANSFER}, not {count}")
        self._send(Message.MEM_READ, size=count, addr=addr)
        _, size, _, _, payload = self._await_reply(Message.MEM_DATA)
        if size != count:
            raise ValueError(f"MEM_DATA carries {size} bytes, {count} were asked for")
        self.counts["mem_read"] += 1
        self.counts["mem_read_bytes"] += count
        return payload

    def mem_write(self, addr, data):
        """Write ``data`` to guest memory at ``addr``; returns once QEMU has done it."""
        data = bytes(data)
        if not 0 < len(data) <= MAX_TRANSFER:
            raise ValueError(f"data must be 1..{MAX_TRANSFER} bytes, not {len(data)}")
        self._send(Message.MEM_WRITE, size=len(data), addr=addr, payload=data)
        self._await_reply(Message.MEM_ACK)
        self.counts["mem_write"] += 1
        self.counts["mem_write_bytes"] += len(data)

    def set_irq(self, level):
        """Drive the slot's interrupt line; sends only changes."""
        level = int(bool(level))
        if level != self.irq_level:
            self._send(Message.IRQ, data=level)
            self.irq_level = level
            self.counts["irq_rise" if level else "irq_fall"] += 1
