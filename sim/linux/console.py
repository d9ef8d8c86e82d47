"""A virtio-console device (DeviceID 3) with VIRTIO_CONSOLE_F_MULTIPORT, in Python behind the
endpoint's device-side ports (docs/spec.md §9), for the Linux co-simulation (:mod:`.cosim`).

Queues (virtio 1.x §5.3.2 with MULTIPORT): 0/1 port 0 receiveq/transmitq, 2/3 control
receiveq/transmitq, 4/5 port 1 receiveq/transmitq. Config space (served on ``cfg_*``): cols and
rows (u16), max_nr_ports (u32) = :data:`PORTS`, emerg_wr (u32; what the driver writes there is
recorded).

Control protocol (§5.3.6.2, as the Linux driver ``virtio_console`` uses it): the driver's
DEVICE_READY is answered with DEVICE_ADD for every port; a port's PORT_READY with, for port 0,
CONSOLE_PORT (it becomes ``hvc0``), then for every port PORT_OPEN (the host side is connected:
without it the driver blocks writes and reads end at once) and PORT_NAME (``cosim.N``, what
``/sys/class/virtio-ports/*/name`` shows; sent last, so a guest that sees the name knows the
port is open). The driver's PORT_OPEN (a guest process opened or closed the port) is recorded.

Data: once a guest process has the port open, the device writes :attr:`ConsoleBackend.rx_total`
bytes of a seeded stream (:func:`rx_stream`) into port 1's receiveq, one chunk of a seeded size
per buffer, a chunk every :data:`RX_GAP_CYCLES` clocks at most, so the stream overlaps the
guest's writes; everything the guest writes on a transmitq is recorded per port.

Every used element is written before the used index, and the used-buffer event (``used_valid``)
is raised only after the index, unless the driver suppresses interrupts on that queue
(VIRTQ_AVAIL_F_NO_INTERRUPT, which Linux sets on the callback-less control transmitq).
"""

import logging
import random
import struct
from collections import deque

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge

from virtio_mmio_sim.cocotb_bus import signal_value as value

from .backend import DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE, DeviceBackend, \
    RingError


VIRTIO_ID_CONSOLE = 3
#: Device feature bits of virtio-console (§5.3.3).
F_SIZE = 0
F_MULTIPORT = 1
F_EMERG_WRITE = 2
#: Ports the device has (max_nr_ports) and the queues that makes: (ports + 1) * 2.
PORTS = 2
QUEUES = (PORTS + 1) * 2
#: Config space: cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
CONFIG_SIZE = 12
COLS, ROWS = 80, 25

# Control events (§5.3.6.2).
DEVICE_READY = 0
DEVICE_ADD = 1
DEVICE_REMOVE = 2
PORT_READY = 3
CONSOLE_PORT = 4
RESIZE = 5
PORT_OPEN = 6
PORT_NAME = 7
EVENT_NAMES = {DEVICE_READY: "DEVICE_READY", DEVICE_ADD: "DEVICE_ADD",
               DEVICE_REMOVE: "DEVICE_REMOVE", PORT_READY: "PORT_READY",
               CONSOLE_PORT: "CONSOLE_PORT", RESIZE: "RESIZE", PORT_OPEN: "PORT_OPEN",
               PORT_NAME: "PORT_NAME"}
CONTROL = struct.Struct("<IHH")
CONTROL_RX, CONTROL_TX = 2, 3

#: Bytes the device sends into port 1's receiveq (the guest reads exactly these).
RX_BYTES = 16384
#: Bytes the guest writes to port 1 (:func:`tx_pattern`, a file in its initramfs).
TX_BYTES = 16384
#: Records the guest writes to hvc0 (port 0, :func:`hvc_pattern`).
HVC_RECORDS = 64
#: Chunk sizes of that stream (one chunk per buffer).
RX_CHUNK = (64, 1024)
#: Clock cycles between two chunks at least.
RX_GAP_CYCLES = 64
#: The console port (hvc0) and the port the data streams run on.
CONSOLE_PORT_ID = 0
DATA_PORT_ID = 1

AVAIL_F_NO_INTERRUPT = 1

log = logging.getLogger("cocotb.virtio_mmio.linux.console")


def port_name(port):
    """The name PORT_NAME gives ``port``."""
    return f"cosim.{port}"


def rx_queue(port):
    """The receiveq of ``port`` (device -> guest)."""
    return 0 if port == 0 else 2 * (port + 1)


def tx_queue(port):
    """The transmitq of ``port`` (guest -> device)."""
    return rx_queue(port) + 1


def queue_role(queue):
    """(kind, port) of a queue: kind "rx", "tx", "control-rx" or "control-tx"."""
    if queue in (CONTROL_RX, CONTROL_TX):
        return ("control-rx" if queue == CONTROL_RX else "control-tx"), None
    port = 0 if queue < 2 else queue // 2 - 1
    return ("rx" if queue % 2 == 0 else "tx"), port


def rx_stream(seed, length=RX_BYTES):
    """The bytes the device sends on port 1 for ``seed``."""
    return random.Random(f"virtio-console rx {seed}").randbytes(length)


def tx_pattern(length):
    """The bytes guest/console writes to port 1 (a file in its initramfs, made by
    :mod:`.setup`): a 32-bit LCG (Numerical Recipes constants), its top byte per step."""
    out = bytearray(length)
    state = 0x1234_5678
    for i in range(length):
        state = (state * 1664525 + 1013904223) & 0xFFFF_FFFF
        out[i] = state >> 24
    return bytes(out)


def hvc_pattern(count):
    """What guest/console writes to hvc0 (port 0): ``count`` records ``hvc0-NNNN;``."""
    return "".join(f"hvc0-{i:04d};" for i in range(count)).encode()


class ConsoleBackend(DeviceBackend):
    """The virtio-console device behind the endpoint's device-side ports, guest memory over
    ``link``; ``busy`` is true while it works or has work it can do."""

    def __init__(self, dut, link, seed, rx_total=RX_BYTES):
        super().__init__(dut, link)
        self.seed = seed
        self.rx_total = rx_total
        self.rx_data = rx_stream(seed, rx_total)
        self.chunks = random.Random(f"virtio-console chunks {seed}")
        self.config = bytearray(CONFIG_SIZE)
        struct.pack_into("<HHII", self.config, 0, COLS, ROWS, PORTS, 0)
        self.emergency = bytearray()        # bytes written to emerg_wr
        self.cycle = 0
        self.working = False
        self.broken = False
        self.errors = []
        # Per queue.
        self.notifications = [0] * QUEUES
        self.used_events = [0] * QUEUES
        self.suppressed = [0] * QUEUES      # used batches without an event (NO_INTERRUPT)
        self.buffers = [0] * QUEUES
        self.timeline = []                  # (cycle, queue) of every used-buffer event
        # Per port.
        self.tx = [bytearray() for _ in range(PORTS)]     # what the guest wrote
        self.rx = [bytearray() for _ in range(PORTS)]     # what the device sent
        self.guest_open = [0] * PORTS                     # the driver's last PORT_OPEN
        self.guest_opens = [[] for _ in range(PORTS)]     # every PORT_OPEN value
        self.control_in = []                # (id, event, value) from the driver
        self.control_out = []               # (id, event, value, payload) to the driver
        self.unexpected = []
        self.device_resets = 0
        self.config_reads = 0
        self._reset_state()

    # ------------------------------------------------------------------ state

    def _reset_state(self):
        self._last_avail = [0] * QUEUES
        self._used_idx = [0] * QUEUES
        self._kicked = set()
        self._starved = set(range(QUEUES))  # no buffer known until the driver notifies
        self._pending = deque()             # control messages to send
        self._rx_sent = {p: len(self.rx[p]) for p in range(PORTS)}
        self._last_chunk = -RX_GAP_CYCLES
        self.guest_open = [0] * PORTS

    def _reset(self):
        self.device_resets += 1
        self.broken = False
        self._reset_state()
        self.dut.notify_ready.value = 0

    @property
    def rx_pending(self):
        return len(self.rx[DATA_PORT_ID]) < self.rx_total

    def _stream_due(self):
        return (self.guest_open[DATA_PORT_ID] and self.rx_pending and
                rx_queue(DATA_PORT_ID) not in self._starved)

    def _work(self):
        """The next thing to do, or None."""
        if self.broken:
            return None
        if self._kicked:
            # Transmit queues first: the driver spins on control messages and hvc0 output.
            return ("kick", min(self._kicked, key=lambda q: (q % 2 == 0, q)))
        if self._pending and CONTROL_RX not in self._starved:
            return ("control", None)
        if self._stream_due() and self.cycle - self._last_chunk >= RX_GAP_CYCLES:
            return ("stream", None)
        return None

    @property
    def busy(self):
        """Working, or with work that needs the clock (a chunk waiting for its gap)."""
        return (self.working or self._work() is not None or
                (not self.broken and self._stream_due()))

    # ------------------------------------------------------------------ cocotb processes

    def start(self):
        self._ports_at_rest()
        cocotb.start_soon(self._config_port())
        cocotb.start_soon(self._run())

    async def _config_port(self):
        """Answer ``cfg_re`` on ``cfg_rdata`` in the next cycle; apply ``cfg_we``."""
        dut = self.dut
        falling = FallingEdge(dut.clk)
        answer = 0
        while True:
            await falling
            dut.cfg_rdata.value = answer
            answer = 0
            if value(dut.cfg_re):
                address = value(dut.cfg_addr)
                self.config_reads += 1
                if address + 4 <= CONFIG_SIZE:
                    answer = int.from_bytes(self.config[address:address + 4], "little")
            elif value(dut.cfg_we):
                address, data, be = value(dut.cfg_addr), value(dut.cfg_wdata), value(dut.cfg_be)
                if address == 8:            # emerg_wr: the low byte is a character
                    if be & 1:
                        self.emergency.append(data & 0xFF)
                else:
                    self.unexpected.append(f"config write at {address:#x} <- {data:#x} "
                                           f"(be {be:#x})")

    async def _run(self):
        dut = self.dut
        falling = FallingEdge(dut.clk)
        while True:
            await falling
            self.cycle += 1
            if value(dut.device_reset):
                self._reset()
                continue
            if not self.broken and value(dut.notify_valid):
                # notify_ready high now: the notification is taken at the coming rising edge.
                dut.notify_ready.value = 1
                queue = value(dut.notify_queue)
                self.working = True
                await falling
                self.cycle += 1
                dut.notify_ready.value = 0
                self.working = False
                if queue < QUEUES:
                    self.notifications[queue] += 1
                    self._kicked.add(queue)
                    self._starved.discard(queue)
                else:
                    self.unexpected.append(f"notification for queue {queue}")
                continue
            work = self._work()
            if work is None:
                dut.notify_ready.value = not self.broken
                continue
            dut.notify_ready.value = 0
            self.working = True
            try:
                await self._do(*work)
            except RingError as error:
                self.errors.append(str(error))
                log.error("ring error: %s; raising needs_reset", error)
                self.broken = True
                dut.needs_reset.value = 1
                await falling
                self.cycle += 1
                dut.needs_reset.value = 0
            # Leave irq time to follow an event before the session loop may stop the clock.
            await ClockCycles(dut.clk, 3)
            self.cycle += 3
            self.working = False

    # ------------------------------------------------------------------ work

    async def _do(self, kind, queue):
        if kind == "kick":
            self._kicked.discard(queue)
            role, port = queue_role(queue)
            if role == "tx":
                await self._drain_tx(queue, lambda data: self.tx[port].extend(data))
            elif role == "control-tx":
                await self._drain_tx(queue, self._control_message)
            # A receiveq's notification only says buffers were added (no longer starved).
            return
        if kind == "control":
            ring = await self._ring(CONTROL_RX)
            sent = 0
            while self._pending:
                message = self._pending[0]
                if not self._give(ring, CONTROL.pack(*message[:3]) + message[3]):
                    self._starved.add(CONTROL_RX)
                    break
                self._pending.popleft()
                self.control_out.append([message[0], EVENT_NAMES[message[1]], message[2],
                                         message[3].decode(errors="replace")])
                sent += 1
            await self._used_event(ring, sent)
            return
        # One chunk of port 1's stream.
        queue = rx_queue(DATA_PORT_ID)
        ring = await self._ring(queue)
        rx = self.rx[DATA_PORT_ID]
        size = min(self.chunks.randint(*RX_CHUNK), self.rx_total - len(rx))
        chunk = self.rx_data[len(rx):len(rx) + size]
        given = self._give(ring, chunk, partial=True)
        if not given:
            self._starved.add(queue)
            return
        rx.extend(chunk[:given])
        self._last_chunk = self.cycle
        await self._used_event(ring, 1)

    def _control_message(self, data):
        if len(data) < CONTROL.size:
            self.errors.append(f"control message of {len(data)} bytes")
            return
        port, event, val = CONTROL.unpack_from(data)
        self.control_in.append([port, EVENT_NAMES.get(event, str(event)), val])
        send = self._pending.append
        if event == DEVICE_READY:
            if val != 1:
                self.errors.append(f"the driver reports DEVICE_READY {val}")
            for p in range(PORTS):
                send((p, DEVICE_ADD, 0, b""))
        elif event == PORT_READY and port < PORTS:
            if val != 1:
                self.errors.append(f"the driver could not add port {port} (PORT_READY {val})")
                return
            if port == CONSOLE_PORT_ID:
                send((port, CONSOLE_PORT, 1, b""))
            send((port, PORT_OPEN, 1, b""))
            send((port, PORT_NAME, 0, port_name(port).encode()))
        elif event == PORT_OPEN and port < PORTS:
            self.guest_open[port] = val
            self.guest_opens[port].append(val)
        else:
            self.unexpected.append(f"control message id={port} event={event} value={val}")

    # ------------------------------------------------------------------ split rings

    async def _ring(self, queue):
        """The queue's state from the queue-state port, checked."""
        ready, num, desc, driver, device = await self._queue_state(queue)
        self.cycle += 2
        if not ready:
            raise RingError(f"queue {queue} is used but not ready")
        if num == 0 or num & (num - 1):
            raise RingError(f"queue {queue}: size {num} is not a power of two")
        return queue, num, desc, driver, device

    def _next(self, ring):
        """The head of the next available chain and its descriptors [(addr, len, write)], or
        None when the driver has made nothing more available."""
        queue, num, desc, avail, _ = ring
        last = self._last_avail[queue]
        avail_idx = self._u16(avail + 2)
        pending = (avail_idx - last) & 0xFFFF
        if pending > num:
            raise RingError(f"queue {queue}: avail idx {avail_idx} is {pending} ahead of "
                            f"{last}, more than the queue size {num}")
        if not pending:
            return None
        head = self._u16(avail + 4 + 2 * (last % num))
        self._last_avail[queue] = (last + 1) & 0xFFFF
        chain, index = [], head
        for _ in range(num):
            if index >= num:
                raise RingError(f"queue {queue}: descriptor index {index} >= size {num}")
            addr, length, flags, following = struct.unpack(
                "<QIHH", self.link.mem_read(desc + DESC_SIZE * index, DESC_SIZE))
            if flags & DESC_F_INDIRECT:
                raise RingError(f"queue {queue}: indirect descriptor {index} (not offered)")
            chain.append((addr, length, bool(flags & DESC_F_WRITE)))
            if not flags & DESC_F_NEXT:
                return head, chain
            index = following
        raise RingError(f"queue {queue}: descriptor chain from {head} loops")

    def _publish(self, ring, head, written):
        """The used element, then the used index after it."""
        queue, num, _, _, used = ring
        idx = self._used_idx[queue]
        self.link.mem_write(used + 4 + 8 * (idx % num), struct.pack("<II", head, written))
        idx = (idx + 1) & 0xFFFF
        self.link.mem_write(used + 2, struct.pack("<H", idx))
        self._used_idx[queue] = idx
        self.buffers[queue] += 1

    def _give(self, ring, data, partial=False):
        """Write ``data`` into the next available buffer (device-writable descriptors) and
        publish it; the bytes written (fewer only with ``partial``), 0 when there is none."""
        found = self._next(ring)
        if found is None:
            return 0
        head, chain = found
        queue = ring[0]
        room = sum(length for _, length, write in chain if write)
        if any(not write for _, _, write in chain):
            raise RingError(f"queue {queue}: receive buffer {head} has a device-readable "
                            f"descriptor")
        if room < len(data) and not partial:
            raise RingError(f"queue {queue}: buffer {head} holds {room} bytes, "
                            f"{len(data)} needed")
        data = data[:room]
        at = 0
        for addr, length, _ in chain:
            if at >= len(data):
                break
            piece = data[at:at + length]
            self.link.mem_write(addr, piece)
            at += len(piece)
        self._publish(ring, head, len(data))
        return len(data)

    async def _drain_tx(self, queue, take):
        """Consume every buffer available on a transmit queue; ``take(bytes)`` per buffer."""
        ring = await self._ring(queue)
        count = 0
        while True:
            found = self._next(ring)
            if found is None:
                break
            head, chain = found
            if any(write for _, _, write in chain):
                raise RingError(f"queue {queue}: transmit buffer {head} has a "
                                f"device-writable descriptor")
            data = b"".join(self.link.mem_read(addr, length) for addr, length, _ in chain
                            if length)
            self._publish(ring, head, 0)
            take(data)
            count += 1
        await self._used_event(ring, count)

    async def _used_event(self, ring, count):
        """After ``count`` used elements were published on the ring's queue: the used-buffer
        event, unless the driver asked for none (read after the index was written)."""
        if not count:
            return
        queue, _, _, avail, _ = ring
        if self._u16(avail) & AVAIL_F_NO_INTERRUPT:
            self.suppressed[queue] += 1
            return
        dut = self.dut
        dut.used_valid.value = 1
        dut.used_queue.value = queue
        self.used_events[queue] += 1
        self.timeline.append((self.cycle, queue))
        await FallingEdge(dut.clk)
        self.cycle += 1
        dut.used_valid.value = 0

    # ------------------------------------------------------------------ record

    def interleaving(self, a=rx_queue(DATA_PORT_ID), b=tx_queue(DATA_PORT_ID)):
        """How often the used-buffer events alternate between queues ``a`` and ``b``: a
        measure of traffic in both directions at the same time (0 or 1: one after the
        other)."""
        seq = [q for _, q in self.timeline if q in (a, b)]
        return sum(1 for x, y in zip(seq, seq[1:]) if x != y)

    def record(self):
        """The console-specific part of the session's JSON record."""
        return {
            "config": self.config.hex(),
            "config_reads": self.config_reads,
            "queue_notifications": self.notifications,
            "queue_used_events": self.used_events,
            "queue_suppressed": self.suppressed,
            "queue_buffers": self.buffers,
            "tx": [bytes(t).hex() for t in self.tx],
            "rx": [bytes(r).hex() for r in self.rx],
            "rx_total": self.rx_total,
            "guest_opens": self.guest_opens,
            "control_in": self.control_in,
            "control_out": self.control_out,
            "control_pending": len(self._pending),
            "unexpected": self.unexpected,
            "emergency": bytes(self.emergency).hex(),
            "interleaving": self.interleaving(),
            "timeline": self.timeline,
        }
