"""End-to-end MSI tests of the generated Verilog (docs/spec.md §4 0x0C0–0x0CC, §7, §11,
Appendix A items 10–11); tests/test_cocotb.py runs this module on every configuration's build.

Real subordinate models sit on the MSI manager port (:mod:`virtio_mmio_sim.cocotb_msi`):
cocotbext-axi's write-side RAM on ``m_axil_*``, a Wishbone subordinate on ``m_wb_*``. Every
write they take is decoded into a vector by an MSI receiver; a monitor records, cycle by cycle,
the device's events, ``msi_enabled`` and each request on the port, which the event-storm
scoreboard replays against a reference model of docs/spec.md §7. In a profile without MSI the port
must stay idle and the 2019 driver falls back to INTx.
"""

import logging

import cocotb

from virtio_mmio.regmap import MsiOp, RegisterMap
from virtio_mmio_sim.cocotb_msi import MsiPort, TargetHistory, check_storm
from virtio_mmio_sim.cocotb_tests.test_endpoint import PARAMS, TIMINGS, Testbench, value
from virtio_mmio_sim.driver import VirtioMmioDriver


log = logging.getLogger("cocotb.virtio_mmio.transport.msi")

HAS_MSI = PARAMS is not None and "MsiStatus" in PARAMS.regmap
#: Offsets of the MSI registers for a profile that lacks them (they must read 0 there).
SEED_MAP = RegisterMap("seed")
#: MsiStatus bit 15 (enable / capable).
MSI_BIT = VirtioMmioDriver.MSI_ENABLE_BIT
STYLES = ("seed", "linux-k1")
#: Simulated time before a test counts as hung: the storm needs about 0.4 ms, every other
#: test less than 0.05 ms.
TIMEOUT_MS = 1
STORM_TIMEOUT_MS = 5


def needs_msi(test):
    return cocotb.skipif(PARAMS is not None and not HAS_MSI,
                         reason="the profile has no MSI")(test)


class MsiBench:
    """A :class:`Testbench` with an :class:`MsiPort` on the manager port, and the driver-side
    bookkeeping the checks need: every UPDATE goes through :meth:`update` (or :meth:`note`), so
    the receiver knows the programmed targets, :attr:`targets` their history and
    :attr:`rejected` how many the MSI window must have refused."""

    def __init__(self, tb):
        self.tb = tb
        self.dut = tb.dut
        self.p = tb.p
        self.port = MsiPort(tb.dut, tb.p)
        self.layout = self.port.layout
        self.receiver = self.port.receiver
        self.monitor = self.port.monitor
        self.vectors = self.layout.vectors
        self.targets = TargetHistory(self.vectors)
        self.rejected = 0
        # linux-k1: MsiStatus bit 15 reads 1 whatever the state; its driver's style is K1
        # (the driver model knows which sequence each profile is written for).
        self.capable = tb.regs.profile.msi_status_capable
        self.style = tb.driver.msi_style

    @classmethod
    async def start(cls, dut, *, timing="random"):
        """Reset, attach the port models; ``timing`` ``"random"`` also puts random
        back-pressure on the manager port, ``"fast"`` keeps it always ready."""
        tb = await Testbench.start(dut, timing=timing)
        bench = cls(tb)
        bench.port.set_backpressure(tb.rng if timing == "random" else None)
        await tb.cycles(2)
        return bench

    def event(self, vector):
        """Raise one event on ``vector`` from the device side (next cycle)."""
        if vector == 0:
            self.tb.device.config_event()
        else:
            self.tb.device.used(vector - 1)

    def route(self, vector, target):
        """Tell the receiver before the UPDATE is written, as an OS sets up the interrupt
        controller before it programs the device: the first message may arrive before the
        UPDATE's write response."""
        if self.layout.accepts(target[0]):
            self.receiver.program(vector, *target)

    def note(self, vector, target):
        """An UPDATE of ``vector`` to ``target`` has completed on the bus."""
        accepted = self.layout.accepts(target[0])
        self.targets.record(vector, self.monitor.cycle, target if accepted else None)
        self.rejected += not accepted

    async def update(self, vector, target):
        self.route(vector, target)
        await self.tb.driver.msi_update(vector, *target)
        self.note(vector, target)

    async def setup(self, targets=None, style=None):
        """The driver's MSI set-up (Appendix A 10 or 11) with ``targets`` (default: every
        vector's mailbox); returns whether MSI was enabled."""
        if targets is None:
            targets = {v: self.layout.good(v) for v in range(self.vectors)}
        for vector, target in targets.items():
            self.route(vector, target)
        enabled = await self.tb.driver.setup_msi(targets, style=style or self.style)
        if enabled:
            for vector, target in targets.items():
                self.note(vector, target)
        return enabled

    async def enable(self, on=True, style=None):
        """Switch MSI on or off the way the driver of ``style`` does (default: the
        profile's)."""
        await self.tb.driver.msi_enable(on, style=style or self.style)

    async def one_message_per_event(self, order, *, status_reads_zero=False):
        """An event on each vector of ``order`` in turn: each must become exactly one
        message, with ``irq`` low (and InterruptStatus reading 0 with ``status_reads_zero``);
        the messages arrive in that order at the programmed targets."""
        tb = self.tb
        for vector in order:
            self.event(vector)
            await tb.wait_for(lambda: self.receiver.count(vector) >= 1, 300,
                              f"the message of vector {vector}")
            await tb.cycles(10)
            assert self.receiver.count(vector) == 1, f"vector {vector}: more than one message"
            assert value(self.dut.irq) == 0
            if status_reads_zero:
                assert await tb.read("InterruptStatus") == 0
        assert [(a, d) for a, d, _ in self.receiver.messages] == \
            [self.layout.good(v) for v in order]

    async def wait_requests(self, count, cycles=400, what="MSI requests"):
        await self.tb.wait_for(lambda: len(self.monitor.requests) >= count, cycles, what)

    def protocol_errors(self):
        """What the monitor and the subordinate model found wrong with the manager's
        handshakes."""
        return self.monitor.violations + getattr(self.port.model, "errors", [])

    async def quiesce(self, cycles=2000):
        """Wait until no request is on the bus and every one taken has been answered."""
        monitor = self.monitor
        try:
            await self.tb.wait_for(lambda: monitor.idle and
                                   monitor.responses == len(monitor.requests),
                                   cycles, "the MSI port to go idle")
        except AssertionError as error:
            # A port that never settles is usually a handshake slip the models saw first.
            raise AssertionError("\n".join([str(error)] + self.protocol_errors()[:10])) \
                from None
        # The error counter takes the last response at the next edge.
        await self.tb.cycles(2)

    async def finish(self):
        """Common end: the port is idle and answered, the subordinate model and the monitor
        agree on every write, the error and rejection counters match what the models did, no
        protocol violation."""
        await self.quiesce()
        monitor, layout = self.monitor, self.layout
        assert not self.protocol_errors(), "\n".join(self.protocol_errors()[:20])
        accepted = [(r.address, r.data) for r in monitor.requests
                    if not layout.refuses(r.address)]
        assert [(a, d) for a, d, _ in self.receiver.messages] == accepted, \
            "the subordinate model received other writes than the monitor saw"
        refused = len(monitor.requests) - len(accepted)
        assert self.port.refused == monitor.error_responses == refused
        assert value(self.dut.msi_errors) == refused, \
            f"msi_errors {value(self.dut.msi_errors)}, {refused} error responses sent"
        assert value(self.dut.msi_error) == (refused > 0)
        assert value(self.dut.msi_rejected) == self.rejected, \
            f"msi_rejected {value(self.dut.msi_rejected)}, {self.rejected} UPDATEs refused"
        await self.tb.finish()


def spell(regs, accesses):
    """``(op, offset, size)`` accesses as ``(op, register name, size)``, for comparing with
    Appendix A."""
    names = {reg.offset: reg.name for reg in regs}
    return [(op, names.get(offset, hex(offset)), size) for op, offset, size in accesses]


# ====================================================================== tests


@cocotb.skipif(HAS_MSI, reason="the profile has MSI")
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_no_msi(dut, timing):
    """A profile without MSI: the 0x0C0–0x0CC offsets read 0 and ignore the seed and K1
    sequences, neither driver enables MSI, events use INTx, the manager port stays idle."""
    bench = await MsiBench.start(dut, timing=timing)
    tb = bench.tb
    await tb.bring_up()
    targets = {v: bench.layout.good(v) for v in range(bench.vectors)}
    assert not await tb.driver.setup_msi(targets, style="linux-k1")
    assert not await tb.driver.setup_msi(targets, style="seed")
    # What the drivers would have written, at the offsets the other profiles decode.
    address, data = bench.layout.good(1)
    await tb.bus.write(SEED_MAP.offset("MsiAddrLow"), address & 0xFFFF_FFFF)
    await tb.bus.write(SEED_MAP.offset("MsiAddrHigh"), address >> 32)
    await tb.bus.write(SEED_MAP.offset("MsiData"), data)
    await tb.bus.write(SEED_MAP.offset("MsiCmd"), MsiOp.UPDATE << 12 | 1, 2)
    await tb.bus.write(SEED_MAP.offset("MsiCmd"), MsiOp.ENABLE << 12 | 1, 2)
    await tb.bus.write(SEED_MAP.offset("MsiStatus"), MSI_BIT, 2)
    for name in ("MsiStatus", "MsiAddrLow", "MsiAddrHigh", "MsiData"):
        assert await tb.bus.read(SEED_MAP.offset(name) & ~3) == 0, f"{name} offset reads non-0"
    assert value(dut.msi_enabled) == 0
    for vector in range(bench.vectors):
        bench.event(vector)
    await tb.wait_for(lambda: tb.device.idle, 20, "the events")
    await tb.cycles(4)
    assert value(dut.irq) == 1
    assert await tb.driver.interrupt() == 0b11
    await tb.cycles(40)
    assert bench.monitor.active_cycles == 0, "the MSI manager port left its idle state"
    assert not bench.monitor.requests
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(style=STYLES, timing=TIMINGS)
async def test_driver_sequences(dut, style, timing):
    """The seed sequence (stage, UPDATE per vector, W16 MsiCmd ENABLE) and the 2019 Linux
    driver's (R16 MsiStatus, stage and UPDATE per vector, R16 + W16 MsiStatus with bit 15):
    then an event on each vector is exactly one message to its programmed address and data,
    while irq and InterruptStatus stay 0; teardown returns to INTx. On `seed` bit 15 reads 0
    before enabling, so the K1 driver stays on INTx."""
    bench = await MsiBench.start(dut, timing=timing)
    tb, p, rng, regs = bench.tb, bench.p, bench.tb.rng, bench.tb.regs
    await tb.bring_up()
    first = len(tb.bus.log)
    enabled = await bench.setup(style=style)
    accesses = spell(regs, tb.bus.log.sequence()[first:])

    if style == "linux-k1" and not bench.capable:
        assert not enabled
        assert accesses == [("R", "MsiStatus", 2)], accesses
        assert value(dut.msi_enabled) == 0
        bench.event(2 % bench.vectors)
        await tb.wait_for(lambda: tb.device.idle, 20, "the event")
        await tb.cycles(2)
        assert value(dut.irq) == 1
        assert await tb.driver.interrupt() != 0
        assert not bench.monitor.requests
        await bench.finish()
        return

    assert enabled
    per_vector = [("W", "MsiAddrLow", 4), ("W", "MsiAddrHigh", 4), ("W", "MsiData", 4),
                  ("W", "MsiCmd", 2)] * bench.vectors
    if style == "linux-k1":
        expected = [("R", "MsiStatus", 2)] + per_vector + \
            [("R", "MsiStatus", 2), ("W", "MsiStatus", 2)]
    else:
        expected = per_vector + [("W", "MsiCmd", 2)]
    assert accesses == expected, accesses
    assert value(dut.msi_enabled) == 1
    assert await tb.driver.msi_status() == MSI_BIT | p.queues

    order = rng.sample(range(bench.vectors), bench.vectors)
    await bench.one_message_per_event(order, status_reads_zero=True)
    if p.bus == "axil":
        for vector in order:
            assert bench.port.model.mailbox(vector) == bench.layout.good(vector)[1]

    # DEVICE_NEEDS_RESET is a configuration-change event too: vector 0.
    tb.device.raise_needs_reset()
    await tb.wait_for(lambda: bench.receiver.count(0) >= 2, 300, "vector 0 again")

    await tb.driver.teardown_msi(style=style)
    assert value(dut.msi_enabled) == 0
    assert await tb.driver.msi_status() == (MSI_BIT if bench.capable else 0) | p.queues
    count = len(bench.monitor.requests)
    bench.event(bench.vectors - 1)
    await tb.wait_for(lambda: tb.device.idle, 20, "the event")
    await tb.cycles(2)
    assert value(dut.irq) == 1
    assert await tb.driver.interrupt() == 0b01
    await tb.cycles(20)
    assert len(bench.monitor.requests) == count, "a message after MSI was switched off"
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def test_latency_and_drain(dut):
    """docs/spec.md §11 with the manager always ready: event input to AWVALID (stb) in at most 2
    clocks; with all N+1 vectors pending at once (both InterruptStatus bits set under INTx,
    then MSI enabled) every vector's message is taken within N + 5 clocks of the enable, once
    each."""
    bench = await MsiBench.start(dut, timing="fast")
    tb, p, rng, monitor = bench.tb, bench.p, bench.tb.rng, bench.monitor
    assert await bench.setup()
    for vector in rng.sample(range(bench.vectors), bench.vectors):
        since, count = monitor.cycle, len(monitor.requests)
        bench.event(vector)
        await bench.wait_requests(count + 1, 20, f"the message of vector {vector}")
        request = monitor.requests[count]
        raised = monitor.event_cycles(vector, since)[0]
        assert request.start - raised <= 2, \
            f"vector {vector}: request {request.start - raised} clocks after the event"
        assert bench.layout.vector_of(request.address) == vector
        await tb.cycles(4)

    await bench.enable(False)
    bench.event(0)
    bench.event(1)
    await tb.wait_for(lambda: tb.device.idle, 20, "the events")
    await tb.cycles(2)
    assert await tb.read("InterruptStatus") == 0b11 and value(dut.irq) == 1
    since, count = monitor.cycle, len(monitor.requests)
    await bench.enable(True)
    await bench.wait_requests(count + bench.vectors, 4 * bench.vectors + 20, "the drain")
    on = monitor.enabled_since(since)
    drained = monitor.requests[count:count + bench.vectors]
    assert sorted(bench.layout.vector_of(r.address) for r in drained) == \
        list(range(bench.vectors))
    clocks = drained[-1].taken - on + 1
    log.info("%d vectors drained in %d clocks from the enable", bench.vectors, clocks)
    assert clocks <= p.queues + 5, f"{bench.vectors} vectors took {clocks} clocks"
    await tb.cycles(20)
    assert len(monitor.requests) == count + bench.vectors
    assert value(dut.irq) == 0 and await tb.read("InterruptStatus") == 0
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=STORM_TIMEOUT_MS, timeout_unit="ms")
async def test_event_storm_scoreboard(dut):
    """More than 10,000 events on random vectors under random back-pressure on the manager
    port and random bus timing, while the driver races enables, disables (both styles where
    the profile takes them) and UPDATEs: re-targets, targets answered with errors and, with an
    MSI window, targets outside it. Bursts alternate with quiet spells in which every vector is
    made valid again. The reference model (:func:`check_storm`) checks that every message was
    owed and carried an allowed target, that nothing is owed after a quiet spell or at the
    end, and irq stays low while MSI is on."""
    bench = await MsiBench.start(dut, timing="random")
    tb, rng, monitor, layout = bench.tb, bench.tb.rng, bench.monitor, bench.layout
    device = tb.device
    await tb.bring_up()
    assert await bench.setup()
    styles = STYLES if bench.capable else ("seed",)
    generation = [0] * bench.vectors
    checkpoints = {}            # cycle -> InterruptStatus read there
    enables = disables = updates = 0

    def next_good(vector):
        generation[vector] += 1
        return layout.good(vector, generation[vector])

    while monitor.events < 10_000:
        bench.port.set_backpressure(rng)
        device.storm = (rng.choice((0.2, 0.4, 0.7)), rng.choice((0.02, 0.05, 0.2)))
        burst_end = monitor.cycle + rng.randrange(200, 1200)
        while monitor.cycle < burst_end:
            action = rng.random()
            if action < 0.1:
                await bench.enable(False, rng.choice(styles))
                disables += 1
            elif action < 0.25:
                await bench.enable(True, rng.choice(styles))
                enables += 1
            elif action < 0.5:
                vector = rng.randrange(bench.vectors)
                kind = rng.random()
                target = None
                if kind < 0.15:
                    target = layout.outside(vector, rng.randrange(3))
                elif kind < 0.25:
                    target = layout.faulty(vector)
                await bench.update(vector, target or next_good(vector))
                updates += 1
            else:
                await tb.cycles(rng.randint(1, 30))
        # A quiet spell with every vector valid: whatever is owed must go out, or, when it
        # starts by switching MSI off while messages still wait, be in InterruptStatus.
        device.storm = None
        if rng.random() < 0.3:
            await bench.enable(False, rng.choice(styles))
            disables += 1
        for vector in range(bench.vectors):
            await bench.update(vector, next_good(vector))
        await tb.cycles(200)
        cycle = monitor.cycle - 1
        checkpoints[cycle] = await tb.read("InterruptStatus")

    # The end: MSI on, so whatever InterruptStatus holds is delivered too.
    await bench.enable(True)
    await tb.cycles(200)
    await bench.quiesce()
    cycle = monitor.cycle - 1
    checkpoints[cycle] = await tb.read("InterruptStatus")
    assert checkpoints[cycle] == 0
    failures = check_storm(monitor, layout, bench.targets, checkpoints)
    assert not failures, "\n".join(failures[:20])
    log.info("storm: %d events, %d messages (%d answered with errors), %d cycles, "
             "%d enables, %d disables, %d UPDATEs (%d refused by the window), %d checkpoints",
             monitor.events, len(monitor.requests), monitor.error_responses, monitor.cycle,
             enables, disables, updates, bench.rejected, len(checkpoints))
    assert monitor.events >= 10_000
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_window_and_waiting(dut, timing):
    """A pending vector that is not valid waits until an UPDATE makes it valid, then sends
    exactly one message. With an MSI window: an UPDATE outside it (below, straddling the top,
    far above) leaves the vector invalid and increments msi_rejected; one at the top edge is
    accepted; a refused UPDATE of a valid vector invalidates it."""
    bench = await MsiBench.start(dut, timing=timing)
    tb, rng, layout, receiver = bench.tb, bench.tb.rng, bench.layout, bench.receiver
    await tb.bring_up()
    order = rng.sample(range(bench.vectors), bench.vectors)
    waiting = {order[0]}
    targets = {v: layout.good(v) for v in order[1:]}
    if layout.window is not None:
        for kind, vector in enumerate(order[1:4]):
            targets[vector] = layout.outside(vector, kind)
            waiting.add(vector)
    assert await bench.setup(targets)
    assert value(dut.msi_rejected) == bench.rejected == len(waiting) - 1

    for vector in order:
        bench.event(vector)
    sent = set(order) - waiting
    # Budget: with the manager stalled 80 % of the time a message takes 5 clocks on average
    # (N = 100: ~450 clocks for 97 messages seen), so allow 12 per message on top.
    await tb.wait_for(lambda: all(receiver.count(v) for v in sent), 400 + 12 * len(sent),
                      "the valid vectors")
    await tb.cycles(60)
    for vector in order:
        assert receiver.count(vector) == (vector in sent), f"vector {vector}"
    assert not receiver.strays and len(bench.monitor.requests) == len(sent)

    for vector in sorted(waiting):
        await bench.update(vector, layout.good(vector, 1))
        await tb.wait_for(lambda: receiver.count(vector), 300, f"waiting vector {vector}")
    await tb.cycles(30)
    for vector in order:
        assert receiver.count(vector) == 1, f"vector {vector}: {receiver.count(vector)}"

    if layout.window is not None:
        base, size = layout.window
        vector = order[-1]
        # The top edge is inside: a write the subordinate happens to answer with an error.
        count = len(bench.monitor.requests)
        await bench.update(vector, (base + size - 4, 0x7000_0000))
        bench.event(vector)
        await bench.wait_requests(count + 1, 300, "the message to the window's top word")
        assert bench.monitor.requests[count].address == base + size - 4
        # A refused UPDATE invalidates a valid vector: its events wait again.
        await bench.update(vector, layout.outside(vector, 2))
        bench.event(vector)
        await tb.cycles(60)
        assert len(bench.monitor.requests) == count + 1
        await bench.update(vector, layout.good(vector, 2))
        await bench.wait_requests(count + 2, 300, "the message after a good UPDATE")
        assert (bench.monitor.requests[-1].address, bench.monitor.requests[-1].data) == \
            layout.good(vector, 2)
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_device_reset(dut, timing):
    """Status = 0 clears MSI enable, every vector and every pending event (docs/spec.md §5): a
    request already on the bus completes, nothing else is sent; after the reset the vectors are
    invalid and the staging registers 0; the K1 teardown after the reset is harmless."""
    bench = await MsiBench.start(dut, timing=timing)
    tb, p, rng, layout, monitor = bench.tb, bench.p, bench.tb.rng, bench.layout, bench.monitor
    await tb.bring_up()
    vectors = list(range(bench.vectors))
    forgotten = rng.choice(vectors)              # pending before the reset, never after
    assert await bench.setup({v: layout.good(v) for v in vectors if v != forgotten})
    bench.event(forgotten)
    bench.port.hold(True)
    for vector in vectors:
        if vector != forgotten:
            bench.event(vector)
    await tb.wait_for(lambda: tb.device.idle, 4 * bench.vectors + 20, "the events")
    await tb.cycles(30)
    on_bus = not monitor.idle
    count = len(monitor.requests)

    await tb.driver.reset()
    assert value(dut.msi_enabled) == 0 and value(dut.irq) == 0
    assert await tb.read("InterruptStatus") == 0
    assert await tb.driver.msi_status() == (MSI_BIT if bench.capable else 0) | p.queues
    if bench.capable:
        await tb.driver.teardown_msi(style="linux-k1")  # the patch may do this after Status = 0
        assert value(dut.msi_enabled) == 0
    bench.port.hold(False)
    await tb.cycles(60)
    assert len(monitor.requests) == count + on_bus, \
        "after the reset only the request already on the bus may complete"
    assert monitor.idle

    await tb.bring_up()
    await bench.enable(True)
    # Staging was cleared: an UPDATE without staging targets address 0 with data 0.
    await tb.write("MsiCmd", MsiOp.UPDATE << 12 | forgotten, 2)
    bench.note(forgotten, (0, 0))
    for vector in vectors:
        if vector != forgotten:
            bench.event(vector)
    await tb.wait_for(lambda: tb.device.idle, 4 * bench.vectors + 20, "the events")
    await tb.cycles(40)
    if layout.accepts(0):
        # The only valid vector: nothing pending for it survived the reset.
        assert len(monitor.requests) == count + on_bus
        bench.event(forgotten)
        await bench.wait_requests(count + on_bus + 1, 300, "the message to address 0")
        request = monitor.requests[-1]
        assert (request.address, request.data) == (0, 0)
        count += 1
    assert len(monitor.requests) == count + on_bus, "a vector stayed valid across the reset"
    assert value(dut.irq) == 0 and await tb.read("InterruptStatus") == 0

    # Valid again: each event raised after the reset is one message; `forgotten`'s event from
    # before the reset is gone.
    for vector in vectors:
        await bench.update(vector, layout.good(vector, 1))
    await tb.cycles(60)
    await bench.quiesce()
    sent = [layout.vector_of(r.address) for r in monitor.requests[count + on_bus:]]
    assert None not in sent and sorted(sent) == [v for v in vectors if v != forgotten], sent
    await bench.finish()


@needs_msi
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_error_responses(dut, timing):
    """A message answered with an error (AXI SLVERR, Wishbone err) is counted on msi_errors
    and latched on msi_error, and not retried; the other vectors keep working."""
    bench = await MsiBench.start(dut, timing=timing)
    tb, rng, layout, monitor = bench.tb, bench.tb.rng, bench.layout, bench.monitor
    await tb.bring_up()
    assert await bench.setup()
    bad = rng.randrange(bench.vectors)
    await bench.update(bad, layout.faulty(bad))
    assert value(dut.msi_error) == 0
    errors = 0
    for _ in range(3 * bench.vectors):
        vector = rng.choice((bad, rng.randrange(bench.vectors)))
        count = len(monitor.requests)
        bench.event(vector)
        await bench.wait_requests(count + 1, 300, f"the message of vector {vector}")
        await tb.cycles(20)
        assert len(monitor.requests) == count + 1, "a message was sent twice"
        errors += vector == bad
        await bench.quiesce()
        assert value(dut.msi_errors) == errors
        assert value(dut.msi_error) == (errors > 0)
    assert errors > 0
    await bench.finish()
