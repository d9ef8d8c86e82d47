"""cocotb tests of the LiteX wrapper's glue (``virtio_mmio.litex.VirtioMmioLiteX``);
tests/test_litex_glue.py converts the wrapper with migen to module :data:`TOPLEVEL` and runs
this module on it under Verilator.

The DUT is the migen top: ``sys_clk``/``sys_rst``, the CPU-side LiteX Wishbone ``bus_*``
(classic, 30-bit word address), the MSI master ``msi_bus_*`` (absent in ``plain-v2``), ``irq``
(``ev.irq``), ``endpoint_irq`` (the endpoint's own ``irq``, which drives it) and the device-side
ports under their docs/spec.md §9 names. cocotbext-wishbone's ``WishboneMaster`` (through
:class:`~virtio_mmio_sim.cocotb_bus.CocotbWishbone`) drives ``bus_*`` under the driver model; a
small Wishbone responder with random ack delays answers ``msi_bus_*``.

Everything on the device side and on ``msi_bus`` happens in one loop on the falling clock edge
(:class:`GlueBench`): it samples the DUT's registered outputs there (what the next rising edge
sees), drives the event inputs and the MSI answers, and counts cycles, so events and messages
share one time base for the scoreboard (docs/spec.md §7: a message is issued in the cycle before
its request first shows on the bus; an event in or after the issue cycle needs another one).
"""

import collections
import json
import logging
import os
import random
from dataclasses import dataclass

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import MAGIC_VALUE
from virtio_mmio_sim.cocotb_bus import CocotbWishbone, signal_value as value
from virtio_mmio_sim.driver import VirtioMmioDriver


#: Environment variable carrying the endpoint's parameters as JSON (``EndpointParams.as_dict``).
PARAMS_ENV = "VIRTIO_MMIO_LITEX_GLUE_PARAMS"
#: The migen top module's name.
TOPLEVEL = "litex_glue_top"
#: The LiteX ``wishbone.Interface`` fields brought out as ``bus_<f>`` / ``msi_bus_<f>``.
WISHBONE_FIELDS = ("adr", "dat_w", "dat_r", "sel", "cyc", "stb", "ack", "we", "err")

CLOCK_NS = 10
TIMEOUT_US = 100
#: LiteX's Wishbone word address: 30 bits.
ADR_MASK = (1 << 30) - 1

log = logging.getLogger("cocotb.virtio_mmio.litex_glue")


def load_params():
    raw = os.environ.get(PARAMS_ENV)
    return None if raw is None else EndpointParams.from_dict(json.loads(raw))


PARAMS = load_params()
HAS_MSI = PARAMS is not None and "MsiStatus" in PARAMS.regmap


def needs_msi(test):
    return cocotb.skipif(PARAMS is not None and not HAS_MSI,
                         reason="the profile has no MSI: msi_bus is None")(test)


@dataclass
class MsiRequest:
    """A request seen on ``msi_bus``: ``start`` the first cycle ``cyc & stb`` showed it,
    ``answered`` the cycle the responder answered it, ``answer`` ``"ack"`` or ``"err"``."""
    start: int
    answered: int
    adr: int
    dat: int
    sel: int
    we: int
    answer: str

    @property
    def issued(self):
        return self.start - 1


class GlueBench:
    """Clock, reset, the LiteX bus backend, the driver model, the device-side event inputs and
    the MSI responder of one test."""

    def __init__(self, dut, params, rng):
        self.dut = dut
        self.p = params
        self.rng = rng
        self.cycle = 0
        self.events = []                # (cycle, vector) of every event driven
        self.requests = []              # MsiRequest
        self.msi_active = []            # cycles with msi_bus cyc or stb high
        self.bus_errors = 0             # cycles with bus_err high
        self.violations = []
        #: (cycle, endpoint request to an address above 4 GiB, endpoint's m_wb_err) of every
        #: cycle with either high, from the wires between the glue and the endpoint instance.
        self.inner = []
        self.refuse = set()             # msi_bus word addresses answered with err
        self.delay = lambda: 0          # msi_bus: cycles from stb to ack
        self._queue = collections.deque()
        self._start = None
        self._due = None
        self.bus = None
        self.driver = None

    @classmethod
    async def start(cls, dut):
        if PARAMS is None:
            raise RuntimeError(f"{PARAMS_ENV} is not set: run these tests through "
                               f"tests/test_litex_glue.py")
        bench = cls(dut, PARAMS, random.Random(random.getrandbits(64)))
        Clock(dut.sys_clk, CLOCK_NS, unit="ns").start()
        for name in ("used_valid", "used_queue", "config_changed", "needs_reset", "q_sel",
                     "cfg_rdata", "notify_ready", "msi_bus_ack", "msi_bus_err"):
            if hasattr(dut, name):
                getattr(dut, name).value = 0
        dut.sys_rst.value = 1
        bench.bus = CocotbWishbone(dut, clock=dut.sys_clk, prefix="bus",
                                   idle=lambda: bench.rng.choice((0, 0, 1, 3)),
                                   gap=lambda: bench.rng.choice((0, 0, 1, 2)))
        bench.bus.master.log.setLevel(logging.WARNING)
        await ClockCycles(dut.sys_clk, 4)
        dut.sys_rst.value = 0
        cocotb.start_soon(bench._run())
        await ClockCycles(dut.sys_clk, 2)
        bench.driver = VirtioMmioDriver(bench.bus, bench.p.regmap)
        return bench

    # ------------------------------------------------------------------ device side

    def raise_events(self, *vectors, queue=None):
        """Drive, in one cycle (the next free one), an event on each of ``vectors`` (vector 0:
        ``config_changed``, vector q + 1: ``used_valid`` with ``used_queue`` = q; at most one
        queue vector). ``queue``: a ``used_queue`` value given directly (one at or above N is
        no vector's event)."""
        queues = [v - 1 for v in vectors if v > 0]
        assert len(queues) + (queue is not None) <= 1
        self._queue.append((0 in vectors, queues[0] if queues else queue))

    def idle_cycle(self):
        self._queue.append((False, None))

    @property
    def quiet(self):
        return not self._queue and self._start is None

    async def settle(self, quiet_cycles=24, limit=5_000):
        """Wait until every event was driven and ``msi_bus`` has been idle for
        ``quiet_cycles``."""
        since = None
        for _ in range(limit):
            await ClockCycles(self.dut.sys_clk, 1)
            busy = not self.quiet or (self.msi_active and self.msi_active[-1] >= self.cycle - 2)
            since = None if busy else (self.cycle if since is None else since)
            if since is not None and self.cycle - since >= quiet_cycles:
                return
        raise AssertionError("the MSI bus never went quiet")

    async def cycles(self, n):
        await ClockCycles(self.dut.sys_clk, n)

    async def _run(self):
        dut = self.dut
        falling = FallingEdge(dut.sys_clk)
        while True:
            await falling
            c = self.cycle
            irq, endpoint_irq = value(dut.irq), value(dut.endpoint_irq)
            enabled = value(dut.msi_enabled)
            if irq != endpoint_irq:
                self._violation(f"ev.irq {irq} differs from the endpoint's irq {endpoint_irq}")
            if enabled and irq:
                self._violation("irq high while MSI is enabled")
            if value(dut.bus_err):
                self.bus_errors += 1
            if HAS_MSI:
                self._inner_cycle(c)
                self._msi_cycle(c)
            config, queue = self._queue.popleft() if self._queue else (False, None)
            dut.config_changed.value = int(config)
            dut.used_valid.value = int(queue is not None)
            dut.used_queue.value = 0 if queue is None else queue
            if config:
                self.events.append((c, 0))
            if queue is not None and queue < self.p.queues:
                self.events.append((c, queue + 1))
            self.cycle += 1

    def _inner_cycle(self, c):
        dut = self.dut
        outside = value(dut.m_wb_cyc) and value(dut.m_wb_stb) and value(dut.m_wb_adr) >> 30 != 0
        err = value(dut.m_wb_err)
        if outside or err:
            self.inner.append((c, bool(outside), err))

    def _msi_cycle(self, c):
        """The responder: answers a request ``delay()`` cycles after it appeared (0: in the
        same cycle), with ``err`` for a word address in :attr:`refuse`; one clock each."""
        dut = self.dut
        cyc, stb = value(dut.msi_bus_cyc), value(dut.msi_bus_stb)
        ack = err = 0
        if cyc or stb:
            self.msi_active.append(c)
        if cyc and stb:
            if self._start is None:
                self._start, self._due = c, c + self.delay()
            if c >= self._due:
                adr = value(dut.msi_bus_adr)
                err = int(adr in self.refuse)
                ack = 1 - err
                self.requests.append(MsiRequest(
                    self._start, c, adr, value(dut.msi_bus_dat_w), value(dut.msi_bus_sel),
                    value(dut.msi_bus_we), "err" if err else "ack"))
                self._start = None
        elif self._start is not None:
            self._violation("msi_bus stb or cyc dropped before the answer")
            self._start = None
        dut.msi_bus_ack.value = ack
        dut.msi_bus_err.value = err

    def _violation(self, message):
        if len(self.violations) < 20:
            self.violations.append(f"cycle {self.cycle}: {message}")

    def random_delays(self, choices=(0, 0, 1, 2, 3, 5, 8)):
        self.delay = lambda: self.rng.choice(choices)

    def check(self):
        assert not self.violations, "\n".join(self.violations)
        assert self.bus_errors == 0, f"bus_err high in {self.bus_errors} cycles"

    # ------------------------------------------------------------------ driver side

    async def bring_up(self, msi_vectors=None):
        """The Linux bring-up to DRIVER_OK with both queues set up; ``msi_vectors``
        ({vector: (address, data)}): programmed with the seed profile's sequence (UPDATE each,
        then ENABLE) before DRIVER_OK."""
        queues = [dict(index=q, size=8, desc=0x1000_0000 + 0x1000 * q,
                       driver=0x1000_0800 + 0x1000 * q, device=0x1000_0C00 + 0x1000 * q)
                  for q in range(self.p.queues)]
        msi = None if msi_vectors is None else (msi_vectors, "seed")
        await self.driver.initialize(queues=queues, msi=msi)
        assert await self.driver.get_status() & 0x4, "DRIVER_OK did not stick"
        assert value(self.dut.driver_ok) == 1
        assert value(self.dut.msi_enabled) == int(msi_vectors is not None)


def msi_data(vector, generation=0):
    return 0xD15C_0000 | generation << 8 | vector


def word_address(address):
    return (address >> 2) & ADR_MASK


# ---------------------------------------------------------------------- tests


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_identity_registers(dut):
    """MagicValue, Version, DeviceID, VendorID through the LiteX bus (byte offset = word
    address x 4), also with high word-address bits set (the window is aligned: only its low
    bits reach the endpoint); a selector write and read-back; no err, msi_bus idle."""
    bench = await GlueBench.start(dut)
    p = bench.p
    window = 1 << p.addr_width
    for base in (0, window, 0x4000_0000 - window):
        assert await bench.bus.read(base + 0x000) == MAGIC_VALUE == 0x74726976
        assert await bench.bus.read(base + 0x004) == p.version
        assert await bench.bus.read(base + 0x008) == p.device_id
        assert await bench.bus.read(base + 0x00C) == p.advertised_vendor_id
    info = await bench.driver.probe()
    assert (info.magic, info.version, info.device_id) == (MAGIC_VALUE, p.version, p.device_id)
    for q in range(p.queues + 1):
        await bench.driver.write("QueueSel", q)
        expected = p.queue_sizes[q] if q < p.queues else 0
        assert await bench.driver.read("QueueNumMax") == expected
    await bench.cycles(10)
    bench.check()
    assert not bench.msi_active and not bench.requests


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_msi_message_per_event(dut):
    """MSI programmed with the seed sequence (MsiAddrLow/High, MsiData, MsiCmd UPDATE per
    vector, then ENABLE) up to DRIVER_OK; each event gives exactly one write on msi_bus with
    adr = address[31:2], the programmed data, sel 0xF; irq low while MSI is enabled."""
    bench = await GlueBench.start(dut)
    bench.random_delays()
    targets = {0: 0xFFFF_FFFC, 1: 0xFEE0_0040}
    targets.update({v: 0x0000_1000 + 0x40 * v for v in range(2, bench.p.queues + 1)})
    vectors = {v: (address, msi_data(v)) for v, address in targets.items()}
    await bench.bring_up(vectors)
    assert await bench.driver.msi_status() == 0x8000 | bench.p.queues
    order = list(vectors) * 3
    bench.rng.shuffle(order)
    for vector in order:
        before = len(bench.requests)
        bench.raise_events(vector)
        await bench.settle()
        new = bench.requests[before:]
        assert len(new) == 1, f"vector {vector}: {len(new)} messages for one event: {new}"
        address, data = vectors[vector]
        request = new[0]
        assert (request.adr, request.dat, request.sel, request.we, request.answer) == \
            (word_address(address), data, 0xF, 1, "ack"), request
        assert value(dut.irq) == 0
    assert await bench.driver.read("InterruptStatus") == 0
    assert value(dut.msi_errors) == 0 and value(dut.msi_error) == 0
    bench.check()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_msi_above_4gib_refused(dut):
    """A vector at or above 4 GiB never reaches msi_bus (no cyc/stb): the glue answers the
    endpoint with err, msi_errors counts one per message and msi_error latches; the port goes
    on working. An err from the LiteX bus itself is counted the same way."""
    bench = await GlueBench.start(dut)
    bench.random_delays()
    good = 0xFEE0_0080
    vectors = {0: (0x1_0000_0000, msi_data(0)), 1: (0x1_0000_0040, msi_data(1)),
               2: (good, msi_data(2))}
    await bench.bring_up(vectors)
    assert value(dut.msi_errors) == 0 and value(dut.msi_error) == 0

    errors = 0
    for vector in (1, 0, 1):
        active = len(bench.msi_active)
        bench.raise_events(vector)
        await bench.settle()
        errors += 1
        assert bench.msi_active[active:] == [], \
            f"vector {vector} above 4 GiB: msi_bus active in cycles {bench.msi_active[active:]}"
        assert value(dut.msi_errors) == errors, \
            f"msi_errors {value(dut.msi_errors)} after {errors} refused messages"
        assert value(dut.msi_error) == 1
        # ... and a good vector still gets its message.
        before = len(bench.requests)
        bench.raise_events(2)
        await bench.settle()
        assert [(r.adr, r.dat, r.answer) for r in bench.requests[before:]] == \
            [(word_address(good), msi_data(2), "ack")]
        assert value(dut.msi_errors) == errors

    # The endpoint's side: each request above 4 GiB is on its port for two clocks, answered
    # with err in the second ("one clock later") and never otherwise.
    runs, err_cycles = [], [c for c, _, err in bench.inner if err]
    for cycle, outside, _ in bench.inner:
        if outside:
            if runs and runs[-1][1] == cycle - 1:
                runs[-1][1] = cycle
            else:
                runs.append([cycle, cycle])
    assert len(runs) == 3 and all(end == start + 1 for start, end in runs), runs
    assert err_cycles == [start + 1 for start, _ in runs], (runs, err_cycles)

    # Two refused vectors and a good one in the same cycle.
    before, active = len(bench.requests), len(bench.msi_active)
    bench.raise_events(0, 1)
    bench.raise_events(2)
    await bench.settle()
    errors += 2
    assert [(r.adr, r.answer) for r in bench.requests[before:]] == [(word_address(good), "ack")]
    assert value(dut.msi_errors) == errors

    # An err answered on the LiteX bus reaches the endpoint.
    bench.refuse.add(word_address(good))
    before = len(bench.requests)
    bench.raise_events(2)
    await bench.settle()
    assert [(r.adr, r.answer) for r in bench.requests[before:]] == [(word_address(good), "err")]
    errors += 1
    assert value(dut.msi_errors) == errors
    assert value(dut.msi_rejected) == 0
    assert all(r.adr == word_address(good) for r in bench.requests)
    bench.check()


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_level_irq(dut):
    """MSI disabled (never enabled, or the plain-v2 profile): an event raises ev.irq, which
    InterruptStatus explains and InterruptACK clears; msi_bus stays idle."""
    bench = await GlueBench.start(dut)
    await bench.bring_up()
    assert value(dut.irq) == 0
    for vectors, bit in (((1,), 0b01), ((0,), 0b10), ((0, bench.p.queues), 0b11)):
        bench.raise_events(*vectors)
        await bench.cycles(4)
        assert value(dut.irq) == 1, f"irq low after an event on {vectors}"
        status = await bench.driver.read("InterruptStatus")
        assert status == bit, f"InterruptStatus {status:#b} after an event on {vectors}"
        assert value(dut.irq) == 1
        await bench.driver.write("InterruptACK", status)
        await bench.cycles(2)
        assert value(dut.irq) == 0, "irq still high after InterruptACK"
        assert await bench.driver.read("InterruptStatus") == 0
    # A used_queue at or above N is no event.
    bench.raise_events(queue=bench.p.queues)
    await bench.cycles(6)
    assert value(dut.irq) == 0
    bench.check()
    assert not bench.msi_active


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_US * 5, timeout_unit="us")
async def test_msi_scoreboard(dut):
    """Several hundred events on vector 0 and the last queue vector (none on the others,
    some on a used_queue >= N) at random spacing, with random msi_bus ack delays: every
    message is owed (docs/spec.md §7: an event marks its vector pending, a pending vector's
    events merge, one message per issue), none is lost, each carries its vector's target,
    the vectors without events get none."""
    bench = await GlueBench.start(dut)
    bench.random_delays((0, 0, 0, 1, 1, 2, 3, 4, 6, 9))
    n = bench.p.queues
    vectors = {v: (0xFEE0_0000 + 0x40 * v, msi_data(v, 1)) for v in range(n + 1)}
    await bench.bring_up(vectors)
    by_target = {(word_address(a), d): v for v, (a, d) in vectors.items()}
    active = (0, n)
    first = bench.cycle
    for _ in range(400):
        kind = bench.rng.random()
        if kind < 0.4:
            bench.raise_events(bench.rng.choice(active))
        elif kind < 0.55:
            bench.raise_events(*active)
        elif kind < 0.6:
            bench.raise_events(queue=n + bench.rng.randrange(3))
        for _ in range(bench.rng.choice((0, 0, 1, 2, 3, 5))):
            bench.idle_cycle()
    await bench.settle(quiet_cycles=40)
    bench.check()

    failures = []
    issued = {}
    for request in bench.requests:
        vector = by_target.get((request.adr, request.dat))
        if vector is None or request.sel != 0xF or not request.we or request.answer != "ack":
            failures.append(f"stray request {request}")
            continue
        if request.issued in issued:
            failures.append(f"two messages issued in cycle {request.issued}")
        issued[request.issued] = vector
    events = collections.defaultdict(list)
    for cycle, vector in bench.events:
        events[cycle].append(vector)
    owed = [False] * (n + 1)
    for cycle in range(first, bench.cycle):
        vector = issued.get(cycle)
        if vector is not None:
            if not owed[vector]:
                failures.append(f"message for vector {vector} issued in {cycle} is owed to "
                                f"no event")
            owed[vector] = False
        for vector in events.get(cycle, ()):
            owed[vector] = True
    if any(owed):
        failures.append(f"events never delivered on vectors "
                        f"{[v for v in range(n + 1) if owed[v]]}")
    counts = collections.Counter(issued.values())
    raised = collections.Counter(v for _, v in bench.events)
    log.info("events per vector %s, messages per vector %s", dict(raised), dict(counts))
    for vector in range(n + 1):
        if vector in active:
            if not 1 <= counts[vector] <= raised[vector]:
                failures.append(f"vector {vector}: {counts[vector]} messages for "
                                f"{raised[vector]} events")
        elif counts[vector] or raised[vector]:
            failures.append(f"vector {vector} without events: {counts[vector]} messages")
    assert not failures, "\n".join(failures[:20])
    assert sum(counts.values()) < sum(raised.values()), "no event merged: a weak test"
    assert value(dut.msi_errors) == 0
    assert await bench.driver.read("InterruptStatus") == 0
