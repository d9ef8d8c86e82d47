"""End-to-end cocotb tests of the virtio-rng example device (``generate --device rng``):
tests/test_rng.py builds the rng endpoint's Verilog with Verilator and runs this module on it.

The guest side is the driver model (:mod:`virtio_mmio_sim.rng_driver`) on the subordinate port
(cocotbext-axi ``AxiLiteMaster`` or cocotbext-wishbone), guest memory is cocotbext-axi's
``AxiLiteRam`` (or a Wishbone RAM model) on the device's DMA port, with random pauses on every
channel, and — in profiles with MSI — cocotbext-axi's write RAM on the MSI port feeding an MSI
receiver. The rings lie at guest-physical addresses with the top address bits set, the buffers
in a second window, so every address bit of the DMA port is exercised.

The DUT's parameters arrive as JSON in ``VIRTIO_MMIO_PARAMS``; the number of buffers of the
traffic test in ``VIRTIO_MMIO_RNG_BUFFERS``; whether to use MSI in ``VIRTIO_MMIO_RNG_MSI``.
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
from virtio_mmio.rng import DEFAULT_SEED
from virtio_mmio_sim.cocotb_bus import backend_for, random_pauses, signal_value as value
from virtio_mmio_sim.cocotb_dma import AxiLiteGuestRam, DmaMonitor, WishboneGuestRam
from virtio_mmio_sim.cocotb_msi import (AxiLiteMsiRam, MsiLayout, MsiReceiver,
                                        WishboneMsiSubordinate)
from virtio_mmio_sim.driver import VirtioMmioDriver
from virtio_mmio_sim.rng_driver import (DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE,
                                        AVAIL_F_NO_INTERRUPT, RingLayout, VirtioRngDriver,
                                        Xorshift32)


PARAMS_ENV = "VIRTIO_MMIO_PARAMS"
BUFFERS_ENV = "VIRTIO_MMIO_RNG_BUFFERS"
MSI_ENV = "VIRTIO_MMIO_RNG_MSI"

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

log = logging.getLogger("cocotb.virtio_mmio.rng")


def load_params():
    raw = os.environ.get(PARAMS_ENV)
    return None if raw is None else EndpointParams.from_dict(json.loads(raw))


PARAMS = load_params()
BUFFERS = int(os.environ.get(BUFFERS_ENV, "500"))
USE_MSI = os.environ.get(MSI_ENV, "0") == "1"


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
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        self.bus = backend_for(self.dut, self.p.bus)
        transport = VirtioMmioDriver(self.bus, self.p.profile)
        self.driver = VirtioRngDriver(transport, self.memory, self.layout,
                                      wait_interrupt=self._wait_interrupt, msi=self.msi)
        self.monitor = DmaMonitor(dut, self.p.bus, self.driver.used_idx)
        self.monitor.check = not self.msi

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

    async def bring_up(self):
        await self.driver.initialize()
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

    def check(self):
        assert not self.write_errors, self.write_errors[:5]
        assert not self.monitor.violations, self.monitor.violations[:5]
        errors = getattr(self.ram, "errors", []) + getattr(self.msi_ram, "errors", [])
        assert not errors, errors[:5]


async def traffic(bench, count, predictor, *, max_segments=3):
    """Post ``count`` buffers of random lengths 1..256, chained at random, keeping the ring
    partly full and kicking after each burst; check every one comes back once, in order, with
    its length and the predicted bytes. Returns the buffers."""
    driver, rng = bench.driver, bench.rng
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
            if not driver.can_post(len(segments)):
                break
            posted.append(driver.post(segments))
            added += 1
        if added:
            await driver.kick()
        for buffer in await driver.wait_used(1):
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
    assert not await bench.driver.needs_reset()
    assert value(dut.rng_buffers) == BUFFERS
    assert bench.memory.read_u16(bench.layout.used) == 0, "used.flags changed"
    bench.check()
    interrupts = bench.driver.interrupts
    log.info("%d buffers, %d bytes, %d interrupts (%d empty), %s", len(returned),
             sum(b.length for b in returned), interrupts, bench.driver.empty_interrupts,
             "MSI" if bench.msi else f"{bench.monitor.irq_rises} irq edges")
    assert interrupts > 0
    if bench.msi:
        assert not bench.receiver.strays
        assert value(dut.irq) == 0


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def rng_batches_and_no_interrupt_flag(dut):
    """A full ring in one kick is served without further kicks; buffers added while the device
    works are served without a kick; with VRING_AVAIL_F_NO_INTERRUPT the buffers are used but
    no interrupt comes."""
    bench = Bench(dut, 2)
    await bench.start()
    await bench.bring_up()
    driver = bench.driver
    predictor = Xorshift32(DEFAULT_SEED)
    size = driver.layout.size
    buffers = [driver.post([(DATA_BASE + SLOT * i, 200)]) for i in range(size // 2)]
    await driver.kick()
    # While the first half is being written, post the rest without a kick.
    await ClockCycles(dut.clk, 20)
    buffers += [driver.post([(DATA_BASE + SLOT * (size // 2 + i), 100)])
                for i in range(size - size // 2)]
    done = await driver.wait_used(size)
    assert [id(b) for b in done] == [id(b) for b in buffers]
    for buffer in done:
        assert buffer.data == predictor.fill(*buffer.segments[0])

    driver.set_avail_flags(AVAIL_F_NO_INTERRUPT)
    before = bench.driver.interrupts
    await ClockCycles(dut.clk, 50)          # the last batch's event, if it is still coming
    if not bench.msi:
        await driver.transport.interrupt()          # clear what is left
    messages = bench.receiver.count(1)
    buffer = driver.post([(DATA_BASE, 64)])
    await driver.kick()
    for _ in range(200):
        await ClockCycles(dut.clk, 10)
        if driver.used_idx() == (driver.last_used + 1) & 0xFFFF:
            break
    await ClockCycles(dut.clk, 50)
    (back,) = driver.harvest()
    assert back is buffer and back.data == predictor.fill(DATA_BASE, 64)
    assert value(dut.irq) == 0
    assert bench.receiver.count(1) == messages
    assert bench.driver.interrupts == before
    bench.monitor.check = False
    bench.check()


def _corrupt(driver, case):
    """Make the next available buffer malformed; returns a description."""
    layout = driver.layout
    if case == "head-out-of-range":
        driver.publish(layout.size + 1)
    elif case == "next-out-of-range":
        driver.write_descriptor(0, DATA_BASE, 8, DESC_F_WRITE | DESC_F_NEXT, 0x7FFF)
        driver.publish(0)
    elif case == "loop":
        driver.write_descriptor(0, DATA_BASE, 8, DESC_F_WRITE | DESC_F_NEXT, 1)
        driver.write_descriptor(1, DATA_BASE + 8, 8, DESC_F_WRITE | DESC_F_NEXT, 0)
        driver.publish(0)
    elif case == "zero-length":
        driver.write_descriptor(0, DATA_BASE, 0, DESC_F_WRITE)
        driver.publish(0)
    elif case == "read-only":
        driver.write_descriptor(0, DATA_BASE, 8, 0)
        driver.publish(0)
    elif case == "read-only-in-chain":
        driver.write_descriptor(0, DATA_BASE, 8, DESC_F_WRITE | DESC_F_NEXT, 1)
        driver.write_descriptor(1, DATA_BASE + 8, 8, 0)
        driver.publish(0)
    elif case == "indirect":
        driver.write_descriptor(0, DATA_BASE, 16, DESC_F_WRITE | DESC_F_INDIRECT)
        driver.publish(0)
    elif case == "dma-error":
        driver.write_descriptor(0, UNMAPPED, 8, DESC_F_WRITE)
        driver.publish(0)
    elif case == "avail-too-far":
        driver.avail_idx = (driver.avail_idx + layout.size + 1) & 0xFFFF
        driver.memory.write_u16(layout.avail + 2, driver.avail_idx)
    else:
        raise ValueError(case)


MALFORMED = ("head-out-of-range", "next-out-of-range", "loop", "zero-length", "read-only",
             "read-only-in-chain", "indirect", "dma-error", "avail-too-far")


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def rng_malformed_rings(dut):
    """Each malformed ring (and a DMA error response): Status reads DEVICE_NEEDS_RESET, a
    configuration interrupt comes, the device stays stopped through further kicks, and after a
    reset it works again."""
    bench = Bench(dut, 3)
    await bench.start()
    bench.backpressure(True)
    driver = bench.driver
    predictor = Xorshift32(DEFAULT_SEED)
    bench.monitor.check = False
    for case in MALFORMED:
        await bench.bring_up()
        await traffic(bench, 5, predictor)
        used = driver.used_idx()
        config_messages = bench.config_messages
        _corrupt(driver, case)
        await driver.kick()
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
        await driver.kick()
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
    bench.check()


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
    bench.check()

