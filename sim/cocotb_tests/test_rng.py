"""End-to-end cocotb tests of the virtio-rng example device (``generate --device rng``):
tests/test_rng.py builds the rng endpoint's Verilog with Verilator and runs this module on it.

The guest side is the driver model (:mod:`virtio_mmio_sim.rng_driver`) on the subordinate port
(cocotbext-axi ``AxiLiteMaster`` or cocotbext-wishbone), guest memory is cocotbext-axi's
``AxiLiteRam`` (or a Wishbone RAM model) on the device's DMA port, with random pauses on every
channel, and — in profiles with MSI — cocotbext-axi's write RAM on the MSI port feeding an MSI
receiver. The rings lie at guest-physical addresses with the top address bits set, the buffers
in a second window, so every address bit of the DMA port is exercised.

Buffers are direct chains or indirect tables (when the driver negotiated INDIRECT_DESC); with
EVENT_IDX the driver kicks only when avail_event asks for it, re-arms used_event with random
delays and sometimes polls with used_event left behind, and an
:class:`~virtio_mmio_sim.rng_driver.EventScoreboard` checks every used-buffer event decision of
the device (never an event EVENT_IDX suppresses, never one missed).

The DUT's parameters arrive as JSON in ``VIRTIO_MMIO_PARAMS``; the number of buffers of the
traffic test in ``VIRTIO_MMIO_RNG_BUFFERS``; whether to use MSI in ``VIRTIO_MMIO_RNG_MSI``; the
features the driver accepts (if offered) in ``VIRTIO_MMIO_RNG_FEATURES`` (default: those stock
Linux keeps).
"""

import json
import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Status
from virtio_mmio.devices.rng import DEFAULT_SEED
from virtio_mmio_sim.cocotb_bus import backend_for, random_pauses, signal_value as value
from virtio_mmio_sim.cocotb_dma import (AxiLiteGuestRam, DmaMonitor, UsedEventMonitor,
                                        WishboneGuestRam)
from virtio_mmio_sim.cocotb_msi import (AxiLiteMsiRam, MsiLayout, MsiReceiver,
                                        WishboneMsiSubordinate)
from virtio_mmio_sim.driver import VirtioMmioDriver
from virtio_mmio_sim.rng_driver import (AVAIL_F_NO_INTERRUPT, EventScoreboard, RingLayout,
                                        VirtioRngDriver, Xorshift32, MALFORMED_RING,
                                        publish_malformed)
from virtio_mmio_sim.rng_driver import MALFORMED_INDIRECT as ALL_MALFORMED_INDIRECT


PARAMS_ENV = "VIRTIO_MMIO_PARAMS"
BUFFERS_ENV = "VIRTIO_MMIO_RNG_BUFFERS"
MSI_ENV = "VIRTIO_MMIO_RNG_MSI"
FEATURES_ENV = "VIRTIO_MMIO_RNG_FEATURES"

CLOCK_NS = 10
#: Guest-physical layout: the rings in a page with the top bits set, buffers in a 64 KiB
#: window above 4 GiB; nothing else is mapped (so a wild address answers an error).
RING_BASE = 0xC0DE_0001_2345_0000
RING_WINDOW = 0x1000
DATA_BASE = 0x0000_0008_4000_0000
DATA_SIZE = 0x1_0000
SLOT = 512
#: An address no window maps.
UNMAPPED = 0xDEAD_BEEF_0000_0000
#: Indirect tables: the upper half of the ring page (read by the device, never written).
TABLES = (RING_BASE + 0x800, 0x800)

log = logging.getLogger("cocotb.virtio_mmio.devices.rng")


def load_params():
    raw = os.environ.get(PARAMS_ENV)
    return None if raw is None else EndpointParams.from_dict(json.loads(raw))


PARAMS = load_params()
BUFFERS = int(os.environ.get(BUFFERS_ENV, "500"))
USE_MSI = os.environ.get(MSI_ENV, "0") == "1"
FEATURES = int(os.environ[FEATURES_ENV], 0) if os.environ.get(FEATURES_ENV) else None


class Bench:
    """Clock, reset, guest memory, MSI port, the driver and the scoreboard's generator."""

    def __init__(self, dut, seed):
        self.dut = dut
        self.p = PARAMS
        self.rng = random.Random(seed)
        self.msi = USE_MSI
        windows = ((RING_BASE, RING_WINDOW), (DATA_BASE, DATA_SIZE))
        if self.p.bus == "axil":
            self.ram = AxiLiteGuestRam(dut, windows)
        else:
            self.ram = WishboneGuestRam(dut, windows)
        self.memory = self.ram.guest
        self.layout = RingLayout.packed(self.p.queue_sizes[0], RING_BASE + 0x100)
        # Every write outside the rings is a data write and must carry the next generator
        # word; writes into the rings only touch used elements and the used index's half.
        self.bus_generator = Xorshift32(DEFAULT_SEED)
        self.write_errors = []
        self.ram.on_write(self._check_write)
        self.msi_layout = MsiLayout(self.p)
        self.receiver = MsiReceiver()
        if self.p.bus == "axil":
            self.msi_ram = AxiLiteMsiRam(dut, self.msi_layout, self.receiver)
        else:
            self.msi_ram = WishboneMsiSubordinate(dut, self.msi_layout, self.receiver)
        self.msi_event = Event()
        self.receiver.on(1, lambda vector, data: self.msi_event.set())
        self.config_messages = 0
        self.receiver.on(0, lambda vector, data: self._config_message())
        self.bus = None
        self.driver = None
        self.monitor = None
        self.scoreboard = EventScoreboard()
        self.delay_rng = random.Random(seed + 100)

    def _config_message(self):
        self.config_messages += 1

    def _check_write(self, address, word, strobe):
        layout = self.layout
        if RING_BASE <= address < RING_BASE + RING_WINDOW:
            used_end = layout.used + 4 + 8 * layout.size
            if address == layout.used & ~3:
                if strobe != 0b1100:
                    self.write_errors.append(f"used.idx write with strobe {strobe:#x} "
                                             f"(used.flags clobbered)")
            elif address == layout.avail_event & ~3:
                # EVENT_IDX only: the device's next available index, which (buffers used in
                # order, one used element each) is the used index it last wrote.
                used_idx = self.memory.read_u16(layout.used + 2)
                if self.driver is None or not self.driver.event_idx:
                    self.write_errors.append("avail_event written without EVENT_IDX")
                elif strobe != 0b0011 or word & 0xFFFF != used_idx:
                    self.write_errors.append(f"avail_event write {word:#010x} strobe "
                                             f"{strobe:#x}, used.idx is {used_idx}")
            elif not (layout.used + 4 <= address < used_end and strobe == 0xF):
                self.write_errors.append(f"ring write at {address:#x} strobe {strobe:#x} "
                                         f"outside the used elements")
        else:
            expected = self.bus_generator.next_word()
            lanes = sum(0xFF << 8 * lane for lane in range(4) if strobe >> lane & 1)
            if (word ^ expected) & lanes:
                self.write_errors.append(f"data write at {address:#x}: {word:#010x}, "
                                         f"generator says {expected:#010x}")

    async def start(self):
        dut = self.dut
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 1
        dut.config_changed.value = 0
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        self.bus = backend_for(self.dut, self.p.bus)
        transport = VirtioMmioDriver(self.bus, self.p.profile)
        self.driver = VirtioRngDriver(
            transport, self.memory, self.layout, wait_interrupt=self._wait_interrupt,
            msi=self.msi, tables=TABLES,
            interrupt_delay=lambda in_flight: self.delay_rng.randrange(in_flight))
        self.monitor = DmaMonitor(dut, self.p.bus, self.driver.used_idx)
        self.monitor.check = not self.msi
        UsedEventMonitor(dut, self.ram, self.layout, self.scoreboard,
                         lambda: self.driver.event_idx)

    def backpressure(self, on=True):
        rng = self.rng if on else None
        self.ram.set_backpressure(rng)
        self.msi_ram.set_backpressure(rng)
        if self.p.bus == "axil":
            self.bus.set_pauses((lambda channel: random_pauses(0.3, self.rng)) if on else None)
        else:
            self.bus.set_timing(idle=(lambda: self.rng.choice((0, 0, 1, 2))) if on else None,
                                gap=(lambda: self.rng.choice((0, 1, 2))) if on else None)

    async def _wait_interrupt(self):
        if self.msi:
            await self.msi_event.wait()
            self.msi_event.clear()
        elif not value(self.dut.irq):
            await RisingEdge(self.dut.irq)

    async def bring_up(self, driver_features=None):
        await self.driver.initialize(
            driver_features=FEATURES if driver_features is None else driver_features)
        if self.msi:
            vectors = {v: self.msi_layout.good(v) for v in (0, 1)}
            for vector, (address, data) in vectors.items():
                self.receiver.program(vector, address, data)
            assert await self.driver.transport.setup_msi(vectors), "MSI could not be enabled"

    def allocator(self):
        slots = DATA_SIZE // SLOT
        counter = iter(range(1 << 62))

        def allocate(length):
            slot = next(counter) % slots
            return DATA_BASE + slot * SLOT + self.rng.randrange(0, SLOT - length + 1)
        return allocate

    async def settle(self):
        """Until every available buffer is used and the device is idle (and the last
        decision's event, if any, is out)."""
        driver = self.driver
        while driver.used_idx() != driver.avail_idx or value(self.dut.rng_busy):
            await ClockCycles(self.dut.clk, 1)
        await ClockCycles(self.dut.clk, 4)

    async def check(self):
        await self.settle()
        assert not self.write_errors, self.write_errors[:5]
        assert not self.monitor.violations, self.monitor.violations[:5]
        errors = getattr(self.ram, "errors", []) + getattr(self.msi_ram, "errors", [])
        assert not errors, errors[:5]
        errors = self.scoreboard.finish()
        assert not errors, errors[:5]


def _indirect_choice(rng, driver, segments):
    """Direct, all in an indirect table, or the first segment direct and the rest in a table
    (when INDIRECT_DESC was negotiated)."""
    if not driver.indirect:
        return False
    return rng.choice([False, True] + ([1] if len(segments) > 1 else []))


async def traffic(bench, count, predictor, *, max_segments=3):
    """Post ``count`` buffers of random lengths 1..256, chained at random, direct or through
    indirect tables, keeping the ring partly full and kicking after each burst (with EVENT_IDX
    only when avail_event asks); now and then one more while the device works, and with
    EVENT_IDX a re-arm with a random delay or a polling round with used_event left behind.
    Check every one comes back once, in order, with its length and the predicted bytes.
    Returns the buffers."""
    driver, rng, dut = bench.driver, bench.rng, bench.dut
    allocate = bench.allocator()
    posted, returned = [], []
    size = driver.layout.size
    while len(returned) < count:
        burst = rng.randint(1, size)
        added = 0
        while added < burst and len(posted) < count:
            segments = [(allocate(n), n) for n in
                        (rng.randint(1, 256) for _ in range(rng.choice(
                            (1, 1, 1, 2, max_segments))))]
            indirect = _indirect_choice(rng, driver, segments)
            if not driver.can_post(len(segments), indirect):
                break
            posted.append(driver.post(segments, indirect=indirect))
            added += 1
        if added:
            await driver.kick()
        done = []
        if len(posted) < count and driver.can_post(1) and rng.random() < 0.4:
            await ClockCycles(dut.clk, rng.randint(1, 80))
            posted.append(driver.post([(allocate(16), 16)]))
            await driver.kick()
            if driver.event_idx:
                done += driver.rearm()
        if not done and driver.event_idx and rng.random() < 0.1:
            driver.set_used_event(driver.last_used - rng.randint(1, 4))
            await bench.settle()
            done = driver.harvest() + driver.rearm()
        if not done:
            done = await driver.wait_used(1)
        for buffer in done:
            expected = b"".join(predictor.fill(a, n) for a, n in buffer.segments)
            assert buffer.data == expected, f"buffer {len(returned)}: bytes differ"
            assert buffer.used_length == buffer.length
            returned.append(buffer)
    assert [id(b) for b in returned] == [id(b) for b in posted], "buffers out of order"
    return returned


@cocotb.test(timeout_time=400, timeout_unit="ms")
async def rng_traffic(dut):
    """Thousands of requests: random lengths and chains, random back-pressure everywhere;
    every buffer exactly once with the right length and bytes, the interrupt never before the
    used index (INTx: checked at every irq edge)."""
    bench = Bench(dut, 1)
    await bench.start()
    bench.backpressure(True)
    await bench.bring_up()
    predictor = Xorshift32(DEFAULT_SEED)
    returned = await traffic(bench, BUFFERS, predictor)
    driver = bench.driver
    assert not await driver.needs_reset()
    assert value(dut.rng_buffers) == BUFFERS
    assert bench.memory.read_u16(bench.layout.used) == 0, "used.flags changed"
    await bench.check()
    interrupts = driver.interrupts
    board = bench.scoreboard
    log.info("features %#x: %d buffers (%d indirect), %d bytes, %d interrupts (%d empty), %s; "
             "kicks %d sent, %d suppressed; event decisions %d raised, %d suppressed",
             driver.features, len(returned), sum(b.table is not None for b in returned),
             sum(b.length for b in returned), interrupts, driver.empty_interrupts,
             "MSI" if bench.msi else f"{bench.monitor.irq_rises} irq edges", driver.kicks,
             driver.kicks_suppressed, board.raised, board.suppressed)
    assert interrupts > 0
    if driver.indirect:
        assert sum(b.table is not None for b in returned) > len(returned) // 3
    if driver.event_idx:
        assert driver.kicks_suppressed > 0 and board.raised > 0 and board.suppressed > 0
    else:
        assert driver.kicks_suppressed == 0 and board.raised + board.suppressed == 0
    if bench.msi:
        assert not bench.receiver.strays
        assert value(dut.irq) == 0


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def rng_batches_and_interrupt_suppression(dut):
    """A full ring in one kick is served without further kicks; buffers added while the device
    works are served without a kick (with EVENT_IDX the driver's kick is left out, as
    avail_event asks for none). Interrupt suppression: without EVENT_IDX
    VRING_AVAIL_F_NO_INTERRUPT; with it used_event one buffer ahead (the first buffer raises
    nothing, the second does) while avail.flags NO_INTERRUPT is ignored."""
    bench = Bench(dut, 2)
    await bench.start()
    await bench.bring_up()
    driver = bench.driver
    predictor = Xorshift32(DEFAULT_SEED)
    size = driver.layout.size
    buffers = [driver.post([(DATA_BASE + SLOT * i, 200)]) for i in range(size // 2)]
    assert await driver.kick()
    # While the first half is being written, post the rest without a kick.
    await ClockCycles(dut.clk, 20)
    buffers += [driver.post([(DATA_BASE + SLOT * (size // 2 + i), 100)])
                for i in range(size - size // 2)]
    if driver.event_idx:
        assert not await driver.kick(), "avail_event moved before the first batch ended"
    done = await driver.wait_used(size)
    assert [id(b) for b in done] == [id(b) for b in buffers]
    for buffer in done:
        assert buffer.data == predictor.fill(*buffer.segments[0])

    driver.set_avail_flags(AVAIL_F_NO_INTERRUPT)
    await bench.settle()                    # the last batch's event, if it is still coming
    await ClockCycles(dut.clk, 50)
    if not bench.msi:
        await driver.transport.interrupt()          # clear what is left
    bench.msi_event.clear()
    done += driver.harvest()
    before = bench.driver.interrupts
    messages = bench.receiver.count(1)
    if driver.event_idx:
        driver.set_used_event(driver.last_used + 1)
        suppressed = bench.scoreboard.suppressed
    buffer = driver.post([(DATA_BASE, 64)])
    assert await driver.kick()
    await bench.settle()
    await ClockCycles(dut.clk, 50)
    assert value(dut.irq) == 0
    assert bench.receiver.count(1) == messages
    if driver.event_idx:
        assert bench.scoreboard.suppressed == suppressed + 1
        second = driver.post([(DATA_BASE + SLOT, 64)])
        assert await driver.kick()
        assert await driver.wait_used(2) == [buffer, second]
        assert bench.driver.interrupts == before + 1
        assert buffer.data == predictor.fill(DATA_BASE, 64)
        assert second.data == predictor.fill(DATA_BASE + SLOT, 64)
    else:
        (back,) = driver.harvest()
        assert back is buffer and back.data == predictor.fill(DATA_BASE, 64)
        assert bench.driver.interrupts == before
    driver.set_avail_flags(0)
    bench.monitor.check = False
    await bench.check()


#: With INDIRECT_DESC negotiated; without it, "indirect-not-negotiated" instead.
MALFORMED_INDIRECT = tuple(case for case in ALL_MALFORMED_INDIRECT
                           if case not in ("indirect-not-negotiated", "indirect-misaligned"))


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def rng_malformed_rings(dut):
    """Each malformed ring and indirect table (and a DMA error response): Status reads
    DEVICE_NEEDS_RESET, a configuration interrupt comes, the device stays stopped through
    further kicks, and after a reset it works again."""
    bench = Bench(dut, 3)
    await bench.start()
    bench.backpressure(True)
    driver = bench.driver
    predictor = Xorshift32(DEFAULT_SEED)
    bench.monitor.check = False
    await bench.bring_up()
    cases = MALFORMED_RING + (MALFORMED_INDIRECT if driver.indirect
                              else ("indirect-not-negotiated",))
    for case in cases:
        await bench.bring_up()
        await traffic(bench, 5, predictor)
        used = driver.used_idx()
        config_messages = bench.config_messages
        publish_malformed(driver, case, table=TABLES[0], data=DATA_BASE,
                          unmapped=UNMAPPED)
        await driver.kick(force=True)
        for _ in range(100):
            await ClockCycles(dut.clk, 20)
            if value(dut.rng_broken):
                break
        status = await driver.status()
        assert status & Status.DEVICE_NEEDS_RESET, f"{case}: Status {status:#x}"
        await ClockCycles(dut.clk, 20)
        if bench.msi:
            assert bench.config_messages > config_messages, f"{case}: no config MSI"
        else:
            assert await driver.transport.read("InterruptStatus") & 2, f"{case}: no config irq"
        # Stopped: more buffers and kicks change nothing.
        driver.post([(DATA_BASE + 0x1000, 32)])
        await driver.kick(force=True)
        await ClockCycles(dut.clk, 300)
        assert driver.used_idx() == used, f"{case}: used.idx moved after NEEDS_RESET"
        assert value(dut.rng_broken) and not value(dut.rng_busy)
        assert await driver.status() & Status.DEVICE_NEEDS_RESET
        await driver.reset()
        await ClockCycles(dut.clk, 2)
        assert not value(dut.rng_broken)
        assert await driver.status() == 0
        # The generator kept running through the failed buffer: catch the predictor up with
        # the words the bus check saw.
        while predictor.words < bench.bus_generator.words:
            predictor.next_word()
        log.info("%s: NEEDS_RESET, stopped, recovered", case)
    await bench.bring_up()
    await traffic(bench, 20, predictor)
    await bench.check()


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def rng_reset_while_busy(dut):
    """A device reset in the middle of a long buffer: the device finishes the access in
    flight, writes nothing more, and serves a freshly set-up ring from index 0."""
    bench = Bench(dut, 4)
    await bench.start()
    bench.backpressure(True)
    await bench.bring_up()
    driver = bench.driver
    predictor = Xorshift32(DEFAULT_SEED)
    driver.post([(DATA_BASE, 0x4000)])
    await driver.kick()
    for _ in range(1000):
        await ClockCycles(dut.clk, 1)
        if bench.ram.writes > 10:
            break
    assert value(dut.rng_busy)
    await driver.reset()
    for _ in range(100):
        if not value(dut.rng_busy):
            break
        await ClockCycles(dut.clk, 1)
    writes = bench.ram.writes
    await ClockCycles(dut.clk, 200)
    assert bench.ram.writes == writes, "the device kept writing after the reset"
    assert driver.used_idx() == 0
    while predictor.words < bench.bus_generator.words:
        predictor.next_word()
    await bench.bring_up()
    await traffic(bench, 10, predictor)
    bench.monitor.check = False
    await bench.check()

