"""The simulator side of the Linux co-simulation: a cocotb test module run on the generated
Verilog by :mod:`virtio_mmio_sim.linux.run`.

* Every MMIO access QEMU forwards (:mod:`.protocol`) becomes one transaction on the endpoint's
  subordinate port through the cocotbext bus models (random pauses on every channel), and its
  answer goes back only when the bus has answered (non-posted, as on a real interconnect).
* ``irq`` is forwarded to the slot's interrupt line after every access and while the device
  works, before QEMU is let go on.
* The device behind the endpoint (:data:`DEVICE_ENV`) is either ``model``,
  :class:`RngBackend`, a virtio-rng device in Python on the endpoint's device-side ports (SPEC
  §9): it takes each notification from the notify stream, reads the queue's addresses from the
  queue-state port, walks the split ring in guest memory over the socket, fills every
  device-writable buffer with bytes from a seeded generator, publishes the used element, and
  only after the used index is written raises a used-buffer event; or ``rtl``, the RTL
  virtio-rng device of :mod:`virtio_mmio.rng` inside the generated module, whose DMA manager
  port (``m_dma_axil_*`` / ``m_dma_wb_*``) is served from guest memory over the socket
  (:class:`LinkMemory` behind the RAM models of :mod:`virtio_mmio_sim.cocotb_dma`).

The session ends when QEMU closes the socket (the guest powered off, or the runner stopped it).
What happened is written as JSON to :data:`RESULT_ENV`'s path: the counters, the bytes the
back-end wrote (hex), the back-end's errors, and every access in ``accesses.log`` beside it.
"""

import json
import logging
import os
import random
import struct
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from virtio_mmio_sim.cocotb_bus import backend_for, random_pauses, signal_value as value
from virtio_mmio_sim.cocotb_tests.test_endpoint import load_params

from .protocol import Link, LinkClosed


SOCKET_ENV = "VIRTIO_MMIO_LINUX_SOCKET"
RESULT_ENV = "VIRTIO_MMIO_LINUX_RESULT"
SEED_ENV = "VIRTIO_MMIO_LINUX_SEED"
DEVICE_ENV = "VIRTIO_MMIO_LINUX_DEVICE"
DEVICES = ("model", "rtl")

CLOCK_NS = 10
#: Simulated time before the session counts as hung. A boot that reads 1 KiB needs well under
#: 1 ms of simulated time; the simulator stands still while it waits for QEMU.
TIMEOUT_MS = 50
#: Seconds QEMU has to connect once the socket listens.
CONNECT_TIMEOUT_S = 60
#: Probability that a bus channel pauses in a cycle.
PAUSE_PROBABILITY = 0.3

# Split-ring layout (virtio 1.x, little-endian).
DESC_SIZE = 16
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4

log = logging.getLogger("cocotb.virtio_mmio.linux")


class RingError(Exception):
    """The driver's ring is malformed: the device raises needs_reset and stops."""


class RngBackend:
    """A virtio-rng device behind the endpoint's device-side ports, with guest memory over
    ``link``. Drives its inputs on the falling clock edge (stable at the next rising edge) and
    samples outputs there."""

    def __init__(self, dut, link, seed):
        self.dut = dut
        self.link = link
        self.rng = random.Random(seed)
        self.stream = bytearray()
        self.busy = False
        self.broken = False
        self.errors = []
        self.notifications = 0
        self.buffers = 0
        self.used_events = 0
        self.device_resets = 0
        self._last_avail = {}
        self._used_idx = {}

    def start(self):
        dut = self.dut
        dut.notify_ready.value = 0
        dut.used_valid.value = 0
        dut.used_queue.value = 0
        dut.config_changed.value = 0
        dut.needs_reset.value = 0
        dut.q_sel.value = 0
        dut.cfg_rdata.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        falling = FallingEdge(dut.clk)
        while True:
            await falling
            if value(dut.device_reset):
                self._reset()
                continue
            dut.notify_ready.value = not self.broken
            if self.broken or not value(dut.notify_valid):
                continue
            # notify_ready is high: the notification is taken at the coming rising edge.
            queue = value(dut.notify_queue)
            self.busy = True
            self.notifications += 1
            await falling
            dut.notify_ready.value = 0
            try:
                served = await self._serve(queue)
            except RingError as error:
                self.errors.append(str(error))
                log.error("ring error: %s; raising needs_reset", error)
                self.broken = True
                dut.needs_reset.value = 1
                await falling
                dut.needs_reset.value = 0
                served = 0
            if served:
                dut.used_valid.value = 1
                dut.used_queue.value = queue
                self.used_events += 1
                await falling
                dut.used_valid.value = 0
            # Leave irq time to follow the event before the main loop may stop the clock.
            await ClockCycles(dut.clk, 3)
            self.busy = False

    def _reset(self):
        self.device_resets += 1
        self._last_avail.clear()
        self._used_idx.clear()
        self.broken = False
        self.dut.notify_ready.value = 0

    async def _queue_state(self, queue):
        dut = self.dut
        dut.q_sel.value = queue
        await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        return (value(dut.q_ready), value(dut.q_num), value(dut.q_desc), value(dut.q_driver),
                value(dut.q_device))

    def _u16(self, addr):
        return struct.unpack("<H", self.link.mem_read(addr, 2))[0]

    async def _serve(self, queue):
        """Serve every buffer the driver made available on ``queue``; the number served."""
        ready, num, desc, avail, used = await self._queue_state(queue)
        if not ready:
            raise RingError(f"notification for queue {queue}, which is not ready")
        if num == 0 or num & (num - 1):
            raise RingError(f"queue {queue}: size {num} is not a power of two")
        last = self._last_avail.get(queue, 0)
        used_idx = self._used_idx.get(queue, 0)
        avail_idx = self._u16(avail + 2)
        pending = (avail_idx - last) & 0xFFFF
        if pending > num:
            raise RingError(f"queue {queue}: avail idx {avail_idx} is {pending} ahead of "
                            f"{last}, more than the queue size {num}")
        for _ in range(pending):
            head = self._u16(avail + 4 + 2 * (last % num))
            written = self._fill_chain(queue, desc, num, head)
            self.link.mem_write(used + 4 + 8 * (used_idx % num), struct.pack("<II", head, written))
            used_idx = (used_idx + 1) & 0xFFFF
            # The index after the element: the driver must never see one without the other.
            self.link.mem_write(used + 2, struct.pack("<H", used_idx))
            last = (last + 1) & 0xFFFF
            self.buffers += 1
        self._last_avail[queue] = last
        self._used_idx[queue] = used_idx
        return pending

    def _fill_chain(self, queue, desc, num, head):
        index, written = head, 0
        for _ in range(num):
            if index >= num:
                raise RingError(f"queue {queue}: descriptor index {index} >= size {num}")
            addr, length, flags, following = struct.unpack(
                "<QIHH", self.link.mem_read(desc + DESC_SIZE * index, DESC_SIZE))
            if flags & DESC_F_INDIRECT:
                raise RingError(f"queue {queue}: indirect descriptor {index} (not offered)")
            if not flags & DESC_F_WRITE:
                raise RingError(f"queue {queue}: descriptor {index} is not device-writable")
            if length == 0:
                raise RingError(f"queue {queue}: descriptor {index} has length 0")
            data = self.rng.randbytes(length)
            self.link.mem_write(addr, data)
            self.stream += data
            written += length
            if not flags & DESC_F_NEXT:
                return written
            index = following
        raise RingError(f"queue {queue}: descriptor chain from {head} loops")


class LinkMemory:
    """Guest memory over the socket, with the interface of
    :class:`~virtio_mmio_sim.rng_driver.GuestMemory` that the DMA RAM models use."""

    def __init__(self):
        self.link = None

    def translate(self, address, length):
        return address

    def read(self, address, length):
        return self.link.mem_read(address, length)

    def write(self, address, data):
        self.link.mem_write(address, data)


class RtlDataRecorder:
    """Keeps the bytes the RTL device writes into buffers: a data write carries the next word
    of the device's xorshift32 generator (:class:`~virtio_mmio_sim.rng_driver.Xorshift32`),
    ring writes do not, so following the generator both separates and checks them."""

    def __init__(self, seed):
        from virtio_mmio_sim.rng_driver import Xorshift32
        self.generator = Xorshift32(seed)
        self.expected = self.generator.next_word()
        self.stream = bytearray()
        self.buffers_words = 0

    def __call__(self, address, word, strobe):
        if word != self.expected:
            return                      # a used-ring write
        raw = word.to_bytes(4, "little")
        self.stream += bytes(raw[lane] for lane in range(4) if strobe >> lane & 1)
        self.buffers_words += 1
        self.expected = self.generator.next_word()


async def _serve_access(dut, bus, link, request, accesses, settle=2):
    """One MMIO access on the subordinate port; the answer goes back once ``irq`` has
    settled."""
    word, lane = request.offset & ~3, request.offset & 3
    mask = (1 << 8 * request.size) - 1
    if request.size not in (1, 2, 4) or lane + request.size > 4:
        # QEMU's region only lets 1-, 2- and 4-byte accesses through; a straddling one cannot
        # be a single bus access.
        raise ValueError(f"unsupported access: {request}")
    if request.write:
        await bus.write_word(word, (request.data & mask) << 8 * lane,
                             ((1 << request.size) - 1) << lane)
        answer = None
    else:
        answer = (await bus.read_word(word)) >> 8 * lane & mask
    await ClockCycles(dut.clk, settle)
    link.set_irq(value(dut.irq))
    accesses.append(f"{request}" + ("" if answer is None else f" -> {answer:#x}") +
                    f"  irq={link.irq_level}")
    if request.write:
        link.reply_write()
    else:
        link.reply_read(answer)


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def linux_session(dut):
    """Serve one QEMU session until QEMU closes the socket."""
    params = load_params()
    socket_path = os.environ[SOCKET_ENV]
    result_path = Path(os.environ[RESULT_ENV])
    seed = int(os.environ.get(SEED_ENV, "1"))
    device = os.environ.get(DEVICE_ENV, "model")
    if device not in DEVICES:
        raise ValueError(f"{DEVICE_ENV} must be one of {', '.join(DEVICES)}, not {device!r}")
    pauses = random.Random(seed + 1)

    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    backend = RngBackend(dut, None, seed)
    memory = recorder = ram = None
    if device == "model":
        backend.start()
    else:
        from virtio_mmio.rng import DEFAULT_SEED
        from virtio_mmio_sim.cocotb_dma import AxiLiteGuestRam, WishboneGuestRam
        memory = LinkMemory()
        recorder = RtlDataRecorder(DEFAULT_SEED)
        ram = (AxiLiteGuestRam if params.bus == "axil" else WishboneGuestRam)(dut, [])
        ram.guest = memory
        ram.on_write(recorder)
        ram.set_backpressure(random.Random(seed + 2))
    bus = backend_for(dut, params.bus)
    if params.bus == "axil":
        bus.set_pauses(lambda channel: random_pauses(PAUSE_PROBABILITY, pauses))
        # The MSI manager port is unused in this profile: accept and answer anything.
        dut.m_axil_awready.value = 1
        dut.m_axil_wready.value = 1
        dut.m_axil_bvalid.value = 0
        dut.m_axil_bresp.value = 0
    else:
        bus.set_timing(idle=lambda: pauses.choice((0, 0, 1, 3)),
                       gap=lambda: pauses.choice((0, 1, 2)))
        dut.m_wb_ack.value = 0
        dut.m_wb_err.value = 0
        if hasattr(dut, "m_wb_stall"):
            dut.m_wb_stall.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    accesses = []
    server = Link.listen(socket_path)
    link = None
    outcome = "closed"
    try:
        link = Link.accept(server, CONNECT_TIMEOUT_S)
        backend.link = link
        if memory is not None:
            memory.link = link
        log.info("QEMU connected")
        # The RTL device leaves idle two clocks after the notify handshake: give it time.
        settle = 2 if device == "model" else 6
        while True:
            link.set_irq(value(dut.irq))
            busy = (backend.busy or value(dut.notify_valid)) if device == "model" else \
                value(dut.rng_busy)
            try:
                request = link.next_request(0 if busy else 1.0)
            except LinkClosed:
                break
            if request is None:
                if busy:
                    await ClockCycles(dut.clk, 4)
                continue
            await _serve_access(dut, bus, link, request, accesses, settle)
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
        raise
    finally:
        server.close()
        if link is not None and not link.closed:
            link.close()
        result_path.parent.mkdir(parents=True, exist_ok=True)
        (result_path.parent / "accesses.log").write_text("\n".join(accesses) + "\n")
        if device == "rtl":
            backend.stream = recorder.stream
            backend.buffers = value(dut.rng_buffers)
            backend.notifications = backend.used_events = None
            if value(dut.rng_broken):
                backend.errors.append("the RTL device stopped (NEEDS_RESET)")
            if ram.refused:
                backend.errors.append(f"{ram.refused} DMA accesses refused")
        result = {
            "outcome": outcome,
            "device": device,
            "bus": params.bus,
            "accesses": len(accesses),
            "link": dict(link.counts) if link is not None else {},
            "notifications": backend.notifications,
            "buffers": backend.buffers,
            "used_events": backend.used_events,
            "device_resets": backend.device_resets,
            "backend_errors": backend.errors,
            "stream": backend.stream.hex(),
        }
        result_path.write_text(json.dumps(result, indent=1))
    assert not backend.errors, f"back-end errors: {backend.errors}"
