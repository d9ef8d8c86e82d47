"""The simulator side of the Linux co-simulation: a cocotb test module run on the generated
Verilog by :mod:`virtio_mmio_sim.linux.run`.

* Every MMIO access QEMU forwards (:mod:`.protocol`) becomes one transaction on the endpoint's
  subordinate port through the cocotbext bus models (random pauses on every channel), and its
  answer goes back only when the bus has answered (non-posted, as on a real interconnect).
* ``irq`` is forwarded to the slot's interrupt line after every access and while the device
  works, before QEMU is let go on. The slot's device-tree interrupt is level-high (as the
  generated .dtsi has it), so the sampled level is all the GIC needs: a drop and rise between
  two samples, or an event in the very cycle of an InterruptACK, leaves the line high and the
  interrupt pending, where an edge-triggered input would lose it.
* The device behind the endpoint (:data:`DEVICE_ENV`) is either ``model``,
  :class:`RngBackend`, a virtio-rng device in Python on the endpoint's device-side ports
  (docs/spec.md §9): it takes each notification from the notify stream, reads the queue's addresses
  from the queue-state port, walks the split ring in guest memory over the socket, fills every
  device-writable buffer with bytes from a seeded generator, publishes the used element, and
  only after the used index is written raises a used-buffer event; or ``rtl``, the RTL
  virtio-rng device of :mod:`virtio_mmio.devices.rng` inside the generated module, whose DMA manager
  port (``m_dma_axil_*`` / ``m_dma_wb_*``) is served from guest memory over the socket
  (:class:`LinkMemory` behind the RAM models of :mod:`virtio_mmio_sim.cocotb_dma`); or
  ``console``, :class:`~.console.ConsoleBackend`, a virtio-console device with MULTIPORT in
  Python on the same ports (six queues: two ports and the control queues; the endpoint's
  config-space port serves its configuration).

* The endpoint's MSI manager port (``m_axil_*`` or ``m_wb_*``) is served by the subordinate
  models of :mod:`virtio_mmio_sim.cocotb_msi` (random pauses, answer delays and stall), each
  write handed to QEMU as one MSI_WRITE: QEMU writes the word into the guest's physical address
  space with the device's requester ID, so a write to the ITS's GITS_TRANSLATER becomes an LPI,
  and a write the guest's memory system refuses is answered SLVERR / ``err`` (the endpoint
  counts it on ``msi_errors``). :class:`MsiTargets` follows the driver's UPDATE commands in the
  access stream, so every message is recorded with the vector it belongs to.
* A MARK from the guest (:class:`~.protocol.Mark`) is answered once the device is idle, after
  its counters were recorded; :data:`~.protocol.MARK_CONFIG_CHANGE` first raises a
  configuration-change event (Python back-end only) and waits for its interrupt to go out;
  :data:`~.protocol.MARK_MSI_ERROR_PROBE` (no driver bound) programs vector 0 itself with an
  address nothing decodes, enables MSI, raises a configuration-change event and resets the
  device: QEMU refuses the message, the port answers it with an error, ``msi_errors`` counts
  it.

The session ends when QEMU closes the socket (the guest powered off, or the runner stopped it).
What happened is written as JSON to :data:`RESULT_ENV`'s path: the counters, the bytes the
back-end wrote (hex), the back-end's errors, every MSI message, the counters at every mark, and
every access (and mark) in ``accesses.log`` beside it.
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
from virtio_mmio_sim.cocotb_msi import (AxiLiteMsiRam, MsiWriteRefused,
                                        WishboneMsiSubordinate)
from virtio_mmio_sim.cocotb_tests.test_endpoint import load_params

from .backend import DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE, DeviceBackend, \
    RingError
from .console import ConsoleBackend
from .protocol import (MARK_CONFIG_CHANGE, MARK_MSI_ERROR_PROBE, MEMTX_OK, MSI_PROBE_ADDRESS,
                       Link, LinkClosed, Mark)


SOCKET_ENV = "VIRTIO_MMIO_LINUX_SOCKET"
RESULT_ENV = "VIRTIO_MMIO_LINUX_RESULT"
SEED_ENV = "VIRTIO_MMIO_LINUX_SEED"
DEVICE_ENV = "VIRTIO_MMIO_LINUX_DEVICE"
DEVICES = ("model", "rtl", "console")

CLOCK_NS = 10
#: Simulated time before the session counts as hung. A boot that reads 1 KiB needs well under
#: 1 ms of simulated time (the Version-3 scenarios a few ms); the simulator stands still while
#: it waits for QEMU.
TIMEOUT_MS = 200
#: Clock cycles the simulation keeps running after an access or MSI-port activity before it
#: waits for QEMU without a clock: room for an event (or an MSI switch-on that moves
#: InterruptStatus into pending vectors) to reach the MSI manager port (docs/spec.md §11: <= 2).
GRACE_CYCLES = 8
#: Clock cycles a MARK waits at most for the device to go idle before it is answered.
MARK_DRAIN_CYCLES = 20000
#: Seconds QEMU has to connect once the socket listens.
CONNECT_TIMEOUT_S = 60
#: Probability that a bus channel pauses in a cycle.
PAUSE_PROBABILITY = 0.3


log = logging.getLogger("cocotb.virtio_mmio.linux")


class RngBackend(DeviceBackend):
    """A virtio-rng device behind the endpoint's device-side ports, with guest memory over
    ``link``."""

    def __init__(self, dut, link, seed):
        super().__init__(dut, link)
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
        self._ports_at_rest()
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


class MsiTargets:
    """The MSI target of every vector as the driver programs it, followed in the stream of
    register writes (docs/spec.md §4: MsiAddrLow/High and MsiData staged, UPDATE ``0x1000 | v`` at
    0x0C2, a 16-bit write or the upper half of a 32-bit one at 0x0C0; Status = 0 resets).
    Targets once programmed stay known after a reset or a re-targeting, so a message issued
    just before either is still attributed."""

    def __init__(self, queues):
        self.vectors = queues + 1
        self._staged = [0, 0, 0]        # address low, address high, data
        self.current = {}               # vector -> (address, data)
        self._known = {}                # (address, data) -> vector
        self.updates = 0

    def observe(self, request):
        """A register write (:class:`~.protocol.MmioRequest`) the endpoint took."""
        word, lane = request.offset & ~3, request.offset & 3
        value32 = (request.data & ((1 << 8 * request.size) - 1)) << 8 * lane
        strobe = ((1 << request.size) - 1) << lane
        if strobe == 0xF and word in (0x0C4, 0x0C8, 0x0CC):
            self._staged[(word - 0x0C4) // 4] = value32
        elif word == 0x0C0 and strobe & 0xC == 0xC:
            command = value32 >> 16
            op, arg = command >> 12, command & 0xFFF
            if op == 1 and arg < self.vectors:
                target = (self._staged[1] << 32 | self._staged[0], self._staged[2])
                self.current[arg] = target
                self._known[target] = arg
                self.updates += 1
        elif word == 0x070 and strobe == 0xF and value32 == 0:
            self._staged = [0, 0, 0]
            self.current.clear()

    def vector(self, address, data):
        """The vector a message to ``address`` with ``data`` belongs to, else None."""
        return self._known.get((address, data))

    def known(self):
        """vector -> every (address, data) it was pointed at."""
        out = {}
        for target, vector in self._known.items():
            out.setdefault(str(vector), []).append([target[0], target[1]])
        return dict(sorted(out.items()))


class MsiBridge:
    """Every write of the endpoint's MSI manager port becomes an MSI_WRITE to QEMU; records
    them as ``[address, data, vector, result, accesses so far]``."""

    def __init__(self, targets):
        self.link = None
        self.targets = targets
        self.writes = []
        self.accesses = 0               # kept current by the session loop
        self.refused = 0
        self.probing = False            # writes now are the error probe's, not the driver's
        self.probe_writes = []

    def deliver(self, address, data):
        """True when QEMU's memory system took the write."""
        if self.link is None:
            result = -1
        else:
            result = self.link.msi_write(address, data)
        vector = self.targets.vector(address, data)
        (self.probe_writes if self.probing else self.writes).append(
            [address, data, vector, result, self.accesses])
        log.info("MSI write %#x <- %#x (vector %s): %s", address, data, vector,
                 "ok" if result == MEMTX_OK else f"refused ({result})")
        if result != MEMTX_OK and not self.probing:
            self.refused += 1
        return result == MEMTX_OK

    def per_vector(self):
        counts = {}
        for _, _, vector, result, _ in self.writes:
            if result == MEMTX_OK:
                key = "none" if vector is None else str(vector)
                counts[key] = counts.get(key, 0) + 1
        return counts


class _AnyPage:
    """The layout object the :mod:`virtio_mmio_sim.cocotb_msi` models take: here every address
    is QEMU's to judge."""
    base = 0
    page = 4

    @staticmethod
    def refuses(address):
        return False


class LinkAxiLiteMsi(AxiLiteMsiRam):
    """:class:`~virtio_mmio_sim.cocotb_msi.AxiLiteMsiRam` (cocotbext-axi's ``AxiLiteRamWrite``
    on ``m_axil_*``) whose writes go to QEMU through ``bridge``; a write QEMU refuses is
    answered SLVERR."""

    def __init__(self, dut, bridge):
        super().__init__(dut, _AnyPage, receiver=None)
        self.bridge = bridge

    async def _write(self, address, data):
        if len(data) != 4 or not self.bridge.deliver(address, int.from_bytes(data, "little")):
            self.refused += 1
            raise MsiWriteRefused(f"MSI write of {len(data)} bytes to {address:#x}")

    def busy(self):
        return not (self.aw_channel.empty() and self.w_channel.empty() and
                    self.b_channel.idle())


class LinkWishboneMsi(WishboneMsiSubordinate):
    """:class:`~virtio_mmio_sim.cocotb_msi.WishboneMsiSubordinate` on ``m_wb_*`` whose writes
    go to QEMU through ``bridge``; a write QEMU refuses is answered ``err``."""

    def __init__(self, dut, bridge):
        super().__init__(dut, _AnyPage, receiver=None)
        self.bridge = bridge

    def _take(self, address, data, we, sel):
        if not we or sel != 0xF:
            self.errors.append(f"MSI request to {address:#x}: we={we} sel={sel:#x}")
            self.refused += 1
            return True
        if not self.bridge.deliver(address, data):
            self.refused += 1
            return True
        return False

    def busy(self):
        return False


class MsiPortActivity:
    """Counts clock cycles and remembers the last one with the MSI manager port (or its
    model) busy, so the session loop keeps the clock running while a message is on its
    way."""

    def __init__(self, dut, axi, model):
        self.dut = dut
        self.model = model
        names = ("awvalid", "wvalid", "bvalid") if axi else ("cyc", "stb")
        prefix = "m_axil" if axi else "m_wb"
        self._signals = [getattr(dut, f"{prefix}_{name}") for name in names]
        self.cycle = 0
        self.last_active = -GRACE_CYCLES
        cocotb.start_soon(self._run())

    async def _run(self):
        falling = FallingEdge(self.dut.clk)
        while True:
            await falling
            self.cycle += 1
            if self.model.busy() or any(value(handle) for handle in self._signals):
                self.last_active = self.cycle

    def recent(self, since):
        """Whether the port was busy within the last GRACE_CYCLES cycles, or a cycle
        ``since`` (an access) was that recent."""
        return self.cycle - max(self.last_active, since) < GRACE_CYCLES


async def _msi_error_probe(dut, bus, backend, bridge, accesses, drain, profile):
    """Point vector 0 at MSI_PROBE_ADDRESS, enable MSI, raise a configuration-change event;
    QEMU refuses the message. Then reset the device. The register writes are this
    simulation's own (``host write`` lines in accesses.log). ``dragonball`` takes staged
    targets only while MSI is on, and is enabled through MsiStatus: enable first (it is on
    already if the driver left it on), then stage, UPDATE and UNMASK."""
    before = value(dut.msi_errors)
    data = 0x00C0_FFEE
    stage = [(0x0C4, MSI_PROBE_ADDRESS & 0xFFFF_FFFF, 0xF), (0x0C8, MSI_PROBE_ADDRESS >> 32, 0xF),
             (0x0CC, data, 0xF), (0x0C0, 0x1000 << 16, 0xC)]      # UPDATE vector 0
    if profile == "dragonball":
        writes = [(0x0C0, 0x8000, 0x3)] + stage + [(0x0C0, 0x3000 << 16, 0xC)]   # UNMASK 0
    else:
        writes = stage + [(0x0C0, 0x2001 << 16, 0xC)]                           # ENABLE
    bridge.probing = True
    try:
        for offset, word, strobe in writes:
            await bus.write_word(offset, word, strobe)
            accesses.append(f"host write {offset:#05x} <- {word:#x} (strobe {strobe:#x})")
        enabled = value(dut.msi_enabled)
        await backend.config_change()
        await ClockCycles(dut.clk, GRACE_CYCLES)
        await drain()
        after = value(dut.msi_errors)
        latched = value(dut.msi_error)
        await bus.write_word(0x070, 0, 0xF)
        accesses.append("host write 0x070 <- 0x0 (strobe 0xf)")
        await ClockCycles(dut.clk, GRACE_CYCLES)
        await drain()
    finally:
        bridge.probing = False
    return {"address": MSI_PROBE_ADDRESS, "data": data, "msi_enabled": enabled,
            "writes": bridge.probe_writes, "msi_errors_before": before,
            "msi_errors_after": after, "msi_error_latched": latched}


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
    backend = (ConsoleBackend if device == "console" else RngBackend)(dut, None, seed)
    memory = recorder = ram = None
    if device in ("model", "console"):
        backend.start()
    else:
        from virtio_mmio.devices.rng import DEFAULT_SEED
        from virtio_mmio_sim.cocotb_dma import AxiLiteGuestRam, WishboneGuestRam
        dut.config_changed.value = 0      # pulsed by backend.config_change() at the marks
        memory = LinkMemory()
        recorder = RtlDataRecorder(DEFAULT_SEED)
        ram = (AxiLiteGuestRam if params.bus == "axil" else WishboneGuestRam)(dut, [])
        ram.guest = memory
        ram.on_write(recorder)
        ram.set_backpressure(random.Random(seed + 2))
    bus = backend_for(dut, params.bus)
    # The MSI manager port: real subordinate models whose writes go to QEMU (idle in
    # profiles without MSI).
    targets = MsiTargets(params.queues)
    bridge = MsiBridge(targets)
    if params.bus == "axil":
        bus.set_pauses(lambda channel: random_pauses(PAUSE_PROBABILITY, pauses))
        msi_port = LinkAxiLiteMsi(dut, bridge)
    else:
        bus.set_timing(idle=lambda: pauses.choice((0, 0, 1, 3)),
                       gap=lambda: pauses.choice((0, 1, 2)))
        msi_port = LinkWishboneMsi(dut, bridge)
    msi_port.set_backpressure(random.Random(seed + 3), busy=(0.2, 0.5))
    activity = MsiPortActivity(dut, params.bus == "axil", msi_port)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    accesses = []           # accesses.log: every access, and the marks between them
    marks = []
    probe = None
    served = 0
    last_access = 0
    server = Link.listen(socket_path)
    link = None
    outcome = "closed"

    def device_busy():
        if device in ("model", "console"):
            return backend.busy or value(dut.notify_valid)
        return value(dut.rng_busy)

    def total(count):
        """A counter of the back-end (per queue for the console: summed)."""
        return sum(count) if isinstance(count, list) else count

    def snapshot(mark):
        return {
            "mark": mark.value, "accesses": served,
            "reads": link.counts["mmio_read"], "writes": link.counts["mmio_write"],
            "buffers": total(backend.buffers) if device != "rtl" else value(dut.rng_buffers),
            "notifications": total(backend.notifications),
            "used_events": total(backend.used_events),
            "config_events": backend.config_events,
            "msi_writes": len(bridge.writes), "irq_rise": link.counts["irq_rise"],
            "msi_enabled": value(dut.msi_enabled), "msi_errors": value(dut.msi_errors),
        }

    async def drain():
        """Run the clock until the device and the MSI port are idle (bounded)."""
        for _ in range(MARK_DRAIN_CYCLES // 4):
            if not (device_busy() or activity.recent(last_access)):
                return True
            await ClockCycles(dut.clk, 4)
            link.set_irq(value(dut.irq))
        return False

    try:
        link = Link.accept(server, CONNECT_TIMEOUT_S)
        backend.link = link
        bridge.link = link
        if memory is not None:
            memory.link = link
        log.info("QEMU connected")
        # The RTL device leaves idle two clocks after the notify handshake: give it time.
        settle = 2 if device == "model" else 6
        while True:
            link.set_irq(value(dut.irq))
            busy = device_busy() or activity.recent(last_access)
            try:
                request = link.next_request(0 if busy else 1.0)
            except LinkClosed:
                break
            if request is None:
                if busy:
                    await ClockCycles(dut.clk, 4)
                continue
            if isinstance(request, Mark):
                idle = await drain()
                if request.value == MARK_CONFIG_CHANGE:
                    await backend.config_change()
                    last_access = activity.cycle
                    idle = await drain() and idle
                elif request.value == MARK_MSI_ERROR_PROBE:
                    probe = await _msi_error_probe(dut, bus, backend, bridge, accesses, drain,
                                                   params.profile)
                link.set_irq(value(dut.irq))
                marks.append(dict(snapshot(request), idle=idle))
                accesses.append(f"{request}" + ("" if idle else "  (device still busy)"))
                link.reply_mark()
                continue
            await _serve_access(dut, bus, link, request, accesses, settle)
            if request.write:
                targets.observe(request)
            served += 1
            bridge.accesses = served
            last_access = activity.cycle
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
        if getattr(msi_port, "errors", None):
            backend.errors.extend(f"MSI port: {error}" for error in msi_port.errors)
        result = {
            "outcome": outcome,
            "device": device,
            "bus": params.bus,
            "profile": params.profile,
            "accesses": served,
            "link": dict(link.counts) if link is not None else {},
            "notifications": total(backend.notifications),
            "buffers": total(backend.buffers),
            "used_events": total(backend.used_events),
            "config_events": backend.config_events,
            "device_resets": backend.device_resets,
            "backend_errors": backend.errors,
            "marks": marks,
            "msi_writes": bridge.writes,
            "msi_per_vector": bridge.per_vector(),
            "msi_refused": bridge.refused,
            "msi_errors": value(dut.msi_errors),
            "msi_updates": targets.updates,
            "msi_targets": targets.known(),
            "msi_error_probe": probe,
            "stream": backend.stream.hex() if device != "console" else "",
        }
        if device == "console":
            result["console"] = backend.record()
        result_path.write_text(json.dumps(result, indent=1))
    assert not backend.errors, f"back-end errors: {backend.errors}"
