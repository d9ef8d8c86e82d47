"""End-to-end cocotb tests of the generated Verilog (docs/spec.md §4–9, §12);
tests/test_cocotb.py builds each configuration with Verilator and runs this module on it.

The DUT's construction parameters arrive as JSON in the environment variable
:data:`PARAMS_ENV` (``EndpointParams.as_dict()``); every test adapts to them. The register
offsets come from :class:`virtio_mmio.regmap.RegisterMap`, the port names are those of
docs/spec.md §9.

The device side is a Python model (:class:`DeviceModel`) that runs on the falling clock edge:
inputs it drives there are stable at the next rising edge, and the DUT outputs it samples there
are the values that rising edge will see, whatever the simulator's ordering of callbacks at the
edge itself.
"""

import collections
import json
import logging
import os
import random
from dataclasses import dataclass

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer, gather, with_timeout
from cocotb.utils import get_sim_time

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import CONFIG_BASE, MAGIC_VALUE, Feature, Status
from virtio_mmio_sim.cocotb_bus import (BusError, CocotbAxiLite, backend_for, pattern_pauses,
                                         random_pauses, signal_value as value)
from virtio_mmio_sim.driver import VirtioMmioDriver


#: Environment variable carrying the DUT's parameters as JSON.
PARAMS_ENV = "VIRTIO_MMIO_PARAMS"

CLOCK_NS = 10
ALL_ONES_32 = 0xFFFF_FFFF

log = logging.getLogger("cocotb.virtio_mmio")

#: Every test runs with the bus at full speed and with random stalls.
TIMINGS = ("fast", "random")
#: Simulated time per test before it counts as hung: about ten times the longest test needs.
TIMEOUT_MS = 1


def load_params():
    """The DUT's :class:`EndpointParams`, rebuilt from :data:`PARAMS_ENV`; None outside a
    simulation run by tests/test_cocotb.py."""
    raw = os.environ.get(PARAMS_ENV)
    if raw is None:
        return None
    return EndpointParams.from_dict(json.loads(raw))


PARAMS = load_params()


@dataclass(frozen=True)
class QueueState:
    ready: int
    num: int
    desc: int
    driver: int
    device: int


class DeviceModel:
    """The device logic behind the device-side ports of docs/spec.md §9, plus a passive bus
    monitor.

    * Config space: answers ``cfg_re`` from :attr:`config` on ``cfg_rdata`` in the next cycle
      (and drives junk in every other cycle, so a wrong read latency shows), applies ``cfg_we``
      with ``cfg_be``. :meth:`mutate_config` changes config from the device side and pulses
      ``config_changed``; :attr:`generation` counts the pulses (what ConfigGeneration must
      read), :attr:`history` holds the config contents after every device-side change.
    * Notifications: ``notify_ready`` is high with :attr:`notify_ready_probability` each cycle;
      every handshake is appended to :attr:`notifications` as ``(queue, data)``.
    * Events: :meth:`used` / :meth:`config_event` / :meth:`raise_needs_reset` queue one-cycle
      pulses; :attr:`storm` = ``(p_used, p_config)`` raises random events every cycle instead.
      With :attr:`check_irq`, ``irq`` must be high in the cycle after every event.
    * Monitor: :attr:`write_strobes` (the byte lanes of every write on the subordinate port),
      :attr:`irq_at_read` (``irq`` in the cycle each read of a word in :attr:`probe_words` is
      sampled), :attr:`device_resets` (cycles with ``device_reset`` high), read/write overlap
      statistics for AXI.
    """

    def __init__(self, dut, params, rng):
        self.dut = dut
        self.p = params
        self.rng = rng
        self.config = bytearray(rng.randbytes(params.config_size))
        self.generation = 0
        self.history = []
        self.cfg_reads = 0
        self.cfg_writes = 0
        self.notify_ready_probability = 1.0
        self.notifications = []
        self._used = collections.deque()
        self._config_events = 0
        self._needs_reset = 0
        self._mutations = collections.deque()
        self.storm = None
        self.events_raised = 0
        self.check_irq = False
        self.errors = []
        self.write_strobes = []
        self.probe_words = set()
        self.irq_at_read = []
        self.device_resets = 0
        self.reads_outstanding = 0
        self.max_reads_outstanding = 0
        self.overlap_cycles = 0
        self._task = None

    # ------------------------------------------------------------------ device-side actions

    def used(self, queue):
        self._used.append(queue)

    def config_event(self):
        self._config_events += 1

    def raise_needs_reset(self):
        self._needs_reset += 1

    def mutate_config(self, offset, data):
        """Change config bytes from the device side; the change comes with a config_changed
        pulse in the same cycle."""
        self._mutations.append((offset, bytes(data)))

    @property
    def idle(self):
        return not (self._used or self._config_events or self._needs_reset or self._mutations)

    def start(self):
        self._task = cocotb.start_soon(self._run())

    def fail(self, message):
        self.errors.append(f"{get_sim_time('ns')} ns: {message}")

    # ------------------------------------------------------------------ the clocked loop

    async def _run(self):
        dut, p, rng = self.dut, self.p, self.rng
        falling = FallingEdge(dut.clk)
        axil = p.bus == "axil"
        pipelined = p.bus == "wishbone" and p.wishbone_mode == "pipelined"
        pending_read = None
        event_last_cycle = False
        probe_next = wb_busy = False
        while True:
            await falling

            # Config port: answer last cycle's read now, junk otherwise.
            dut.cfg_rdata.value = (pending_read if pending_read is not None
                                   else rng.getrandbits(32))
            pending_read = None
            re, we = value(dut.cfg_re), value(dut.cfg_we)
            changed = False
            if self._mutations:
                offset, data = self._mutations.popleft()
                self.config[offset:offset + len(data)] = data
                self.history.append(bytes(self.config))
                changed = True
            if re or we:
                address = value(dut.cfg_addr)
                if re and we:
                    self.fail("cfg_re and cfg_we high in the same cycle")
                if address % 4 or address >= p.config_size:
                    self.fail(f"config access at {address:#x} outside 0..{p.config_size:#x}")
                elif re:
                    self.cfg_reads += 1
                    pending_read = int.from_bytes(self.config[address:address + 4], "little")
                elif we:
                    self.cfg_writes += 1
                    data, be = value(dut.cfg_wdata), value(dut.cfg_be)
                    for lane in range(4):
                        if be >> lane & 1:
                            self.config[address + lane] = data >> 8 * lane & 0xFF

            # Notifications (notify_valid is a register: it does not depend on notify_ready).
            ready = rng.random() < self.notify_ready_probability
            dut.notify_ready.value = ready
            if ready and value(dut.notify_valid):
                self.notifications.append((value(dut.notify_queue), value(dut.notify_data)))

            # Events.
            irq = value(dut.irq)
            if self.check_irq and event_last_cycle and not irq:
                self.fail("irq low in the cycle after an event")
            used = None
            config_changed = changed
            needs_reset = False
            if self.storm is not None:
                p_used, p_config = self.storm
                if rng.random() < p_used:
                    used = rng.randrange(p.queues)
                config_changed |= rng.random() < p_config
            else:
                if self._used:
                    used = self._used.popleft()
                if self._config_events:
                    self._config_events -= 1
                    config_changed = True
                if self._needs_reset:
                    self._needs_reset -= 1
                    needs_reset = True
            dut.used_valid.value = used is not None
            dut.used_queue.value = rng.getrandbits(16) if used is None else used
            dut.config_changed.value = config_changed
            dut.needs_reset.value = needs_reset
            self.generation += config_changed
            event_last_cycle = ((used is not None and used < p.queues) or config_changed or
                                needs_reset)
            self.events_raised += event_last_cycle

            if value(dut.device_reset):
                self.device_resets += 1

            # Bus monitor. A probed read's value is InterruptStatus in the cycle the read
            # reaches the register core: the cycle it is taken, or (pipelined) the next one.
            if probe_next:
                self.irq_at_read.append(irq)
            probe_now = False
            if axil:
                w_fire = value(dut.s_axil_wvalid) and value(dut.s_axil_wready)
                if w_fire:
                    self.write_strobes.append(value(dut.s_axil_wstrb))
                ar_fire = value(dut.s_axil_arvalid) and value(dut.s_axil_arready)
                r_fire = value(dut.s_axil_rvalid) and value(dut.s_axil_rready)
                probe_now = ar_fire and value(dut.s_axil_araddr) >> 2 in self.probe_words
                self.reads_outstanding += ar_fire - r_fire
                self.max_reads_outstanding = max(self.max_reads_outstanding,
                                                 self.reads_outstanding)
                self.overlap_cycles += bool(ar_fire and w_fire)
            else:
                cyc_stb = value(dut.s_wb_cyc) and value(dut.s_wb_stb)
                ack = value(dut.s_wb_ack)
                if ack and value(dut.s_wb_we):
                    self.write_strobes.append(value(dut.s_wb_sel))
                # Classic: a request is taken in its first cycle; it is the same request
                # until its ack.
                taken = cyc_stb and (not value(dut.s_wb_stall) if pipelined else not wb_busy)
                if not pipelined:
                    wb_busy = (wb_busy and not ack) or taken
                if taken and not value(dut.s_wb_we) and value(dut.s_wb_adr) in self.probe_words:
                    probe_now = True
            if p.pipeline:
                probe_next = probe_now
            elif probe_now:
                self.irq_at_read.append(irq)


class Testbench:
    """Clock, reset, bus backend, device model and driver model for one test."""

    def __init__(self, dut, params, rng):
        self.dut = dut
        self.p = params
        self.regs = params.regmap
        self.rng = rng
        self.device = DeviceModel(dut, params, rng)
        self.bus = None
        self.driver = None

    @classmethod
    async def start(cls, dut, *, timing="random"):
        """Reset the DUT and return a ready testbench. ``timing``: ``"random"`` (random pauses on
        every AXI channel / random Wishbone idle cycles) or ``"fast"``."""
        if PARAMS is None:
            raise RuntimeError(f"{PARAMS_ENV} is not set: run these tests through "
                               f"tests/test_cocotb.py")
        tb = cls(dut, PARAMS, random.Random(random.getrandbits(64)))
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        tb._drive_idle_inputs()
        dut.rst.value = 1
        tb.bus = tb._make_bus()
        tb.set_timing(timing)
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        tb.device.start()
        await ClockCycles(dut.clk, 2)
        tb.driver = VirtioMmioDriver(tb.bus, tb.regs)
        return tb

    def _drive_idle_inputs(self):
        dut = self.dut
        for name in ("used_valid", "used_queue", "config_changed", "needs_reset", "q_sel",
                     "cfg_rdata", "notify_ready",
                     # MSI manager port: never ready, no responses (these tests leave MSI off).
                     "m_axil_awready", "m_axil_wready", "m_axil_bvalid", "m_axil_bresp",
                     "m_wb_ack", "m_wb_err", "m_wb_stall"):
            if hasattr(dut, name):
                getattr(dut, name).value = 0

    def _make_bus(self):
        bus = backend_for(self.dut, self.p.bus)
        if isinstance(bus, CocotbAxiLite):
            loggers = (bus.master.write_if.log, bus.master.read_if.log)
        else:
            loggers = (bus.master.log,)
        # The bus models log every access at INFO: thousands of lines per test.
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        return bus

    def set_timing(self, timing, *, backpressure=False):
        """``"fast"``: the bus at full speed; ``"random"``: random pauses on every AXI channel
        (with ``backpressure``, never zero on R and B) or random Wishbone idle cycles."""
        rng = self.rng
        if timing == "fast":
            if isinstance(self.bus, CocotbAxiLite):
                self.bus.set_pauses(None)
            else:
                self.bus.set_timing()
        elif timing == "random":
            if isinstance(self.bus, CocotbAxiLite):
                # Each channel its own timing, so AW and W drift apart and B/R back-pressure
                # comes and goes independently: a random rate, or a fixed pattern (which
                # holds a channel for a whole stretch, e.g. W long after AW).
                timings = {}
                for name in CocotbAxiLite.CHANNELS:
                    if rng.random() < 0.3:
                        # At least one cycle without a pause, or the channel stalls for good.
                        timings[name] = [0] + [rng.randint(0, 1)
                                               for _ in range(rng.randint(1, 11))]
                    else:
                        timings[name] = rng.choice((0.0, 0.2, 0.5, 0.8))
                if backpressure:
                    timings.update(r=rng.choice((0.3, 0.6)), b=rng.choice((0.3, 0.6)))
                log.info("AXI channel pauses (rate or pattern): %s", timings)

                def pauses(name):
                    if isinstance(timings[name], list):
                        return pattern_pauses(timings[name])
                    return random_pauses(timings[name], rng)
                self.bus.set_pauses(pauses)
            else:
                self.bus.set_timing(idle=lambda: rng.choice((0, 0, 0, 1, 3)),
                                    gap=lambda: rng.choice((0, 0, 1, 2)))
        else:
            raise ValueError(f"timing must be 'random' or 'fast', not {timing!r}")

    # ------------------------------------------------------------------ helpers

    def off(self, name):
        return self.regs.offset(name)

    def word(self, name):
        return self.regs[name].word

    async def cycles(self, n):
        await ClockCycles(self.dut.clk, n)

    async def read(self, name, size=4):
        return await self.driver.read(name, size)

    async def write(self, name, data, size=4):
        await self.driver.write(name, data, size)

    async def queue_states(self, queues):
        """The queue-state port for each of ``queues``, one q_sel per cycle.

        The outputs are read after q_sel has already moved on to the next queue (1 ns after
        the falling edge where it changed), so only a read latency of exactly one cycle
        passes: a combinational port would show the next queue, a slower one the previous."""
        dut = self.dut
        states = []
        await FallingEdge(dut.clk)
        dut.q_sel.value = queues[0]
        for following in list(queues[1:]) + [None]:
            await FallingEdge(dut.clk)
            dut.q_sel.value = self.rng.getrandbits(16) if following is None else following
            await Timer(1, "ns")
            states.append(QueueState(value(dut.q_ready), value(dut.q_num), value(dut.q_desc),
                                     value(dut.q_driver), value(dut.q_device)))
        return states

    async def queue_state(self, queue):
        return (await self.queue_states([queue]))[0]

    def reset_queue_state(self, queue):
        """What the queue-state port shows for ``queue`` after a (device) reset."""
        if queue >= self.p.queues:
            return QueueState(0, 0, 0, 0, 0)
        return QueueState(0, self.p.queue_sizes[queue], 0, 0, 0)

    async def expect(self, name, expected, size=4):
        got = await self.read(name, size)
        assert got == expected, f"{name} reads {got:#x}, expected {expected:#x}"

    async def wait_for(self, condition, cycles, what):
        for _ in range(cycles):
            if condition():
                return
            await RisingEdge(self.dut.clk)
        assert condition(), f"timed out after {cycles} cycles waiting for {what}"

    def random_queue_setup(self, queue):
        rng = self.rng
        return dict(index=queue, size=rng.randint(1, self.p.queue_sizes[queue]),
                    desc=rng.getrandbits(60) << 4, driver=rng.getrandbits(63) << 1,
                    device=rng.getrandbits(62) << 2)

    async def bring_up(self, driver_features=None, msi=None):
        """The Linux bring-up with every queue (and ``msi``, ``(vectors, style)``, set up
        before DRIVER_OK); returns the queue setups."""
        setups = [self.random_queue_setup(q) for q in range(self.p.queues)]
        await self.driver.initialize(setups, driver_features=driver_features, msi=msi)
        return setups

    async def snapshot(self):
        """Everything a driver and the device can observe without changing it: every readable
        register, the device-state outputs and the queue-state port of every queue."""
        state = {}
        for reg in self.regs:
            if reg.readable:
                state[reg.name] = await self.bus.read(reg.offset, reg.width // 8)
        await self.cycles(2)
        dut = self.dut
        for port in ("status", "driver_ok", "features", "irq", "notify_valid"):
            state[port] = value(getattr(dut, port))
        for queue in range(self.p.queues):
            state[f"queue{queue}"] = await self.queue_state(queue)
        state["notifications"] = len(self.device.notifications)
        state["device_resets"] = self.device.device_resets
        state["cfg_writes"] = self.device.cfg_writes
        return state

    def doorbells(self):
        """The doorbell offsets (docs/spec.md §6)."""
        p = self.p
        if not p.has_doorbells:
            return set()
        if p.notify_multiplier == 0:
            return {p.notify_base}
        return {p.notify_base + q * p.notify_multiplier for q in range(p.queues)}

    def beyond_config(self):
        """A few offsets above config space inside the window."""
        p = self.p
        end = 1 << p.addr_width
        return sorted(o for o in {p.config_end, p.config_end + 4, end - 4}
                      if p.config_end <= o < end)

    def offered_bit_missing(self):
        """A feature bit the device does not offer."""
        return next(bit for bit in range(64) if not self.p.features >> bit & 1)

    async def finish(self):
        """Common end of every test: the bus still answers and the device model saw no
        protocol violation."""
        assert await self.read("MagicValue") == MAGIC_VALUE
        assert not self.device.errors, "\n".join(self.device.errors[:20])


def expected_notification(tb, word):
    """The (queue, data) a full QueueNotify write of ``word`` must produce, or None if it must
    be dropped (docs/spec.md §6)."""
    if tb.driver.features >> Feature.NOTIFICATION_DATA & 1:
        queue = word & 0xFFFF
    else:
        queue = word
    return (queue, word) if queue < tb.p.queues else None


# ====================================================================== tests


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_bring_up(dut, timing):
    """The Linux bring-up with every queue; device-state outputs and the queue-state port show
    what the driver wrote; shared-memory regions; queue teardown."""
    tb = await Testbench.start(dut, timing=timing)
    p, rng = tb.p, tb.rng
    setups = await tb.bring_up(driver_features=p.features)   # a driver that knows every bit

    info = tb.driver.info
    assert (info.magic, info.version, info.device_id, info.vendor_id) == \
        (MAGIC_VALUE, p.version, p.device_id, p.advertised_vendor_id)
    if p.version >= 3:
        assert info.notify_layout == (p.notify_base, p.notify_multiplier)
    final_status = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK
    await tb.expect("Status", final_status)
    await tb.cycles(2)
    assert value(dut.status) == final_status
    assert value(dut.driver_ok) == 1
    assert value(dut.features) == p.features
    assert tb.device.device_resets == 1, "initialize() writes Status = 0 exactly once"

    expected = {setup["index"]: QueueState(1, setup["size"], setup["desc"], setup["driver"],
                                           setup["device"]) for setup in setups}
    expected.update({queue: tb.reset_queue_state(queue) for queue in (p.queues, 0xFFFF)})
    sweep = [rng.choice(list(expected)) for _ in range(4 * len(expected))]
    for queue, state in zip(sweep, await tb.queue_states(sweep)):
        assert state == expected[queue], f"queue {queue}: {state}, expected {expected[queue]}"

    # The register view agrees with the port view.
    for queue in range(p.queues):
        await tb.write("QueueSel", queue)
        await tb.expect("QueueReady", 1)
        await tb.expect("QueueNumMax", p.queue_sizes[queue])

    for region in p.shm:
        assert await tb.driver.shm_region(region.id) == (region.base, region.length)
    missing = next(i for i in range(256) if i not in {r.id for r in p.shm})
    assert await tb.driver.shm_region(missing) is None

    last = p.queues - 1
    await tb.driver.teardown_queue(last)
    assert (await tb.queue_state(last)).ready == 0
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_config_space(dut, timing):
    """1-, 2- and 4-byte config accesses reach the device's bytearray with the right byte
    enables; byte arrays read through the ConfigGeneration loop stay consistent while the device
    changes config concurrently."""
    tb = await Testbench.start(dut, timing=timing)
    p, device, rng = tb.p, tb.device, tb.rng
    await tb.bring_up()

    if p.config_size == 0:
        for offset in range(CONFIG_BASE, CONFIG_BASE + 16, 4):
            if offset not in tb.doorbells():       # with no config, doorbells start here
                await tb.bus.write(offset, rng.getrandbits(32))
            assert await tb.bus.read(offset) == 0
        assert device.cfg_reads == device.cfg_writes == 0
        await tb.finish()
        return

    # What config space must hold: the device's initial bytes plus the driver's writes, each
    # touching exactly its own bytes.
    mirror = bytearray(device.config)
    for _ in range(400):
        size = rng.choice((1, 2, 4))
        offset = rng.randrange(0, p.config_size, size)
        if rng.random() < 0.5:
            got = await tb.driver.read_config(offset, size)
            want = int.from_bytes(mirror[offset:offset + size], "little")
            assert got == want, f"config read {offset:#x}/{size}: {got:#x}, expected {want:#x}"
        else:
            data = rng.getrandbits(8 * size)
            await tb.driver.write_config(offset, data, size)
            mirror[offset:offset + size] = data.to_bytes(size, "little")
            assert device.config == mirror, \
                f"config write {offset:#x}/{size} of {data:#x} reached the device wrongly"
    whole = bytearray()
    for offset in range(0, p.config_size, 4):
        whole += (await tb.driver.read_config(offset, 4)).to_bytes(4, "little")
    assert whole == mirror

    # Beyond config_size: reads 0, writes never reach the device.
    writes = device.cfg_writes
    for offset in tb.beyond_config():
        if offset not in tb.doorbells():
            await tb.bus.write(offset, rng.getrandbits(32))
        assert await tb.bus.read(offset) == 0, f"offset {offset:#x} beyond config reads non-0"
    assert device.cfg_writes == writes

    # ConfigGeneration retry loop against concurrent device-side changes.
    assert await tb.read("ConfigGeneration") == device.generation
    length = min(p.config_size, 40) - 1
    start = 1 if length > 1 else 0
    stop = False

    async def mutate():
        for _ in range(40):
            await tb.cycles(rng.randint(3, 60))
            offset = rng.randrange(start, start + length)
            device.mutate_config(offset, rng.randbytes(1))
            if rng.random() < 0.3:
                device.config_event()      # a change with no byte change still bumps it
        await tb.cycles(4)

    device.history = [bytes(device.config)]
    mutator = cocotb.start_soon(mutate())
    retries = reads = 0
    while not stop:
        stop = mutator.done()
        data, tries = await tb.driver.read_config_bytes(start, length)
        reads += 1
        retries += tries - 1
        versions = {version[start:start + length] for version in device.history}
        assert data in versions, "read_config_bytes returned a mix of two config versions"
    assert retries > 0, "the device changed config during the reads, yet no retry happened"
    assert await tb.read("ConfigGeneration") == device.generation
    log.info("config loop: %d reads, %d retries, generation %d", reads, retries,
                    device.generation)
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_interrupts(dut, timing):
    """Used and config events raise irq; the driver's interrupt() reads and acknowledges; irq
    drops; an event storm never leaves irq and InterruptStatus disagreeing."""
    tb = await Testbench.start(dut, timing=timing)
    p, device, rng = tb.p, tb.device, tb.rng
    await tb.bring_up()
    assert value(dut.irq) == 0

    async def raise_and_wait(action):
        action()
        await tb.wait_for(lambda: device.idle, 10, "the event to be raised")
        await tb.cycles(2)

    await raise_and_wait(lambda: device.used(rng.randrange(p.queues)))
    assert value(dut.irq) == 1
    assert await tb.driver.interrupt() == 0b01
    await tb.cycles(2)
    assert value(dut.irq) == 0

    generation = await tb.read("ConfigGeneration")
    await raise_and_wait(device.config_event)
    assert value(dut.irq) == 1
    assert await tb.read("ConfigGeneration") == generation + 1
    assert await tb.driver.interrupt() == 0b10
    await tb.cycles(2)
    assert value(dut.irq) == 0

    # Both causes, acknowledged one at a time.
    await raise_and_wait(lambda: (device.used(0), device.config_event()))
    await tb.expect("InterruptStatus", 0b11)
    await tb.write("InterruptACK", 0b01)
    await tb.expect("InterruptStatus", 0b10)
    assert value(dut.irq) == 1
    await tb.write("InterruptACK", 0b10)
    await tb.expect("InterruptStatus", 0)
    await tb.cycles(1)
    assert value(dut.irq) == 0

    # A used event for a queue that does not exist has no vector: nothing happens.
    await raise_and_wait(lambda: device.used(p.queues))
    await tb.expect("InterruptStatus", 0)
    assert value(dut.irq) == 0

    # needs_reset: DEVICE_NEEDS_RESET in Status and a configuration-change interrupt.
    status = await tb.read("Status")
    await raise_and_wait(device.raise_needs_reset)
    await tb.expect("Status", status | Status.DEVICE_NEEDS_RESET)
    assert value(dut.status) == status | Status.DEVICE_NEEDS_RESET
    assert await tb.driver.interrupt() == 0b10

    # The storm: random events every cycle while the driver handles interrupts.
    device.check_irq = True
    device.probe_words = {tb.word("InterruptStatus")}
    device.irq_at_read.clear()
    first_read = len(tb.bus.log)
    seen = 0
    # First events every cycle (irq can never drop), then sparse ones (it rises and falls
    # around every acknowledgement).
    for storm, cycles in (((1.0, 0.5), 2000), ((0.05, 0.02), 8000)):
        device.storm = storm
        storm_end = get_sim_time("ns") + cycles * CLOCK_NS
        while get_sim_time("ns") < storm_end:
            if value(dut.irq):
                seen |= await tb.driver.interrupt()
            else:
                await tb.cycles(rng.randint(1, 4))
                if rng.random() < 0.3:
                    await tb.read("InterruptStatus")     # a poll outside an interrupt
    device.storm = None
    await tb.cycles(2)
    for _ in range(4):
        if not value(dut.irq):
            break
        seen |= await tb.driver.interrupt()
        await tb.cycles(2)
    device.check_irq = False
    await tb.expect("InterruptStatus", 0)
    assert value(dut.irq) == 0
    assert seen == 0b11, f"the storm should have raised both causes, saw {seen:#b}"

    is_offset = tb.off("InterruptStatus")
    reads = [v for op, offset, _, v in tb.bus.log[first_read:]
             if op == "R" and offset == is_offset]
    # Reads complete in issue order, so the n-th read logged is the n-th one probed.
    assert len(reads) == len(device.irq_at_read), \
        f"{len(reads)} InterruptStatus reads, {len(device.irq_at_read)} seen on the bus"
    for index, (status_read, irq) in enumerate(zip(reads, device.irq_at_read)):
        assert bool(status_read) == bool(irq), \
            f"read {index}: InterruptStatus {status_read:#x} while irq was {irq}"
    log.info("storm: %d events, %d InterruptStatus reads", device.events_raised, len(reads))
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_notifications(dut, timing):
    """Notifications under random notify_ready back-pressure: each one written arrives exactly
    once and in order; queues >= N and partial writes are dropped; a notify write the stream
    cannot take waits on the bus while (AXI) other reads complete."""
    tb = await Testbench.start(dut, timing=timing)
    p, device, rng = tb.p, tb.device, tb.rng
    await tb.bring_up()
    data_mode = bool(tb.driver.features >> Feature.NOTIFICATION_DATA & 1)
    expected = []

    device.notify_ready_probability = 0.3
    for _ in range(300):
        kind = rng.random()
        queue = rng.randrange(p.queues)
        word = (rng.getrandbits(16) << 16 | queue) if data_mode else queue
        if kind < 0.15:
            # No such queue: in data mode the low half names it; otherwise the whole word
            # does, so any high bit makes it out of range.
            if data_mode or rng.random() < 0.5:
                word = (word & 0xFFFF_0000) | rng.randint(p.queues, 0xFFFF)
            else:
                word = rng.randint(1, 0xFFFF) << 16 | queue
        elif kind > 0.9:
            size = rng.choice((1, 2))
            offset = tb.off("QueueNotify") + rng.randrange(0, 4, size)
            await tb.bus.write(offset, word & ((1 << 8 * size) - 1), size)
            continue
        await tb.write("QueueNotify", word)
        want = expected_notification(tb, word)
        if want is not None:
            expected.append(want)
    await tb.wait_for(lambda: len(device.notifications) >= len(expected), 2000,
                      "every notification")
    await tb.cycles(20)
    assert device.notifications == expected

    # Stop the stream: the first notify_fifo_depth notifications wait in the endpoint, the
    # next on the bus.
    device.notify_ready_probability = 0.0
    await tb.cycles(2)
    held = []
    for index in range(p.notify_fifo_depth):
        queue = index % p.queues
        held.append(expected_notification(tb, queue))
        await tb.write("QueueNotify", queue)
    blocked = cocotb.start_soon(tb.write("QueueNotify", p.queues - 1))
    await tb.cycles(30)
    assert not blocked.done(), "a notify write completed although the stream was full"
    assert value(dut.notify_valid) == 1
    if p.bus == "wishbone" and p.wishbone_mode == "pipelined" and not p.pipeline:
        # (With the request stage the waiting write was taken into it: unanswered, it holds
        # the bus without a stall.)
        assert value(dut.s_wb_stall) == 1, "a waiting notify write must stall the bus"
    if p.bus == "axil":
        for _ in range(8):
            assert await with_timeout(tb.read("MagicValue"), 200 * CLOCK_NS, "ns") == \
                MAGIC_VALUE
            assert await with_timeout(tb.read("DeviceID"), 200 * CLOCK_NS, "ns") == p.device_id
        assert not blocked.done()
    count = len(device.notifications)
    device.notify_ready_probability = 1.0
    await with_timeout(blocked, 200 * CLOCK_NS, "ns")
    await tb.cycles(10)
    assert device.notifications[count:] == held + [expected_notification(tb, p.queues - 1)]
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_reserved_and_read_only(dut, timing):
    """Reserved offsets read 0 and ignore writes; write-only registers read 0; writes to
    read-only registers are ignored; the constant registers read their values."""
    tb = await Testbench.start(dut, timing=timing)
    p, regs, rng = tb.p, tb.regs, tb.rng
    await tb.bring_up()

    await tb.expect("MagicValue", MAGIC_VALUE)
    await tb.expect("Version", p.version)
    await tb.expect("DeviceID", p.device_id)
    await tb.expect("VendorID", p.advertised_vendor_id)
    await tb.expect("QueueNotify", p.notify_layout)
    if "MsiStatus" in regs:
        # N in [10:0]; bit 15: MSI not enabled (seed), or always 1 where the profile says MSI
        # is implemented (linux-k1); the MsiCmd half reads 0.
        capable = regs.profile.msi_status_capable
        assert await tb.bus.read(tb.off("MsiStatus")) == (capable << 15) | p.queues

    before = await tb.snapshot()
    for word in regs.reserved_words():
        assert await tb.bus.read(4 * word) == 0, f"reserved offset {4 * word:#x} not 0"
        await tb.bus.write(4 * word, rng.getrandbits(32))
        assert await tb.bus.read(4 * word) == 0, f"reserved offset {4 * word:#x} kept a write"
    for reg in regs:
        if reg.access == "W":
            got = await tb.bus.read(reg.offset, reg.width // 8)
            assert got == 0, f"write-only {reg.name} reads {got:#x}"
        elif reg.access == "R":
            await tb.bus.write(reg.offset, rng.getrandbits(reg.width), reg.width // 8)
    # The window above config space: doorbells and the rest read 0.
    for offset in tb.beyond_config():
        assert await tb.bus.read(offset) == 0, f"offset {offset:#x} beyond config reads non-0"
    after = await tb.snapshot()
    assert after == before
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_partial_writes(dut, timing):
    """Writes that do not enable all four byte lanes change no control register; the backends
    really put those lanes on the bus."""
    tb = await Testbench.start(dut, timing=timing)
    p, regs, rng, device = tb.p, tb.regs, tb.rng, tb.device
    # Halfway through a bring-up, so that an honoured partial write would show: every queue
    # but the selected last one is ready (a changed QueueSel shows on QueueReady or
    # QueueNumMax), an interrupt and features are pending, FEATURES_OK is not yet set.
    await tb.driver.probe()
    await tb.driver.reset()
    await tb.driver.add_status(Status.ACKNOWLEDGE)
    await tb.driver.add_status(Status.DRIVER)
    offered = await tb.driver.device_features()
    await tb.driver.write_driver_features(offered)
    for queue in range(p.queues - 1):
        await tb.driver.setup_queue(**tb.random_queue_setup(queue))
    await tb.write("QueueSel", p.queues - 1)
    device.used(0)
    device.config_event()
    await tb.cycles(6)

    issued = []
    before = await tb.snapshot()
    for reg in regs:
        if not (reg.writable and reg.full_write and reg.width == 32):
            continue
        for strobe in (0x1, 0x2, 0x4, 0x8, 0x3, 0xC, 0x6, 0x7, 0xE):
            for data in (0, 0x0101_0101, rng.getrandbits(32)):
                await tb.bus.write_word(reg.offset, data, strobe)
                issued.append(strobe)
    after = await tb.snapshot()
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}

    # The selectors and the accepted features were not touched either: a full low-word write
    # still lands in the low word, and FEATURES_OK takes exactly the offered set.
    await tb.write("DriverFeatures", offered & ALL_ONES_32)
    await tb.driver.add_status(Status.FEATURES_OK)
    await tb.expect("Status", Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
    await tb.cycles(1)
    assert value(dut.features) == offered

    # The backend put exactly those lanes on the bus (every other write here is full).
    assert [s for s in device.write_strobes if s != 0xF] == issued
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_queue_select_out_of_range(dut, timing):
    """QueueSel >= N: QueueNumMax and QueueReady read 0, queue writes are ignored (also when
    the low bits of QueueSel alias a real queue); QueueNum is checked against QueueNumMax; a
    ready queue ignores its setup registers."""
    tb = await Testbench.start(dut, timing=timing)
    p, rng = tb.p, tb.rng
    await tb.driver.probe()
    await tb.driver.reset()
    await tb.driver.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
    await tb.driver.negotiate()

    qbits = max(1, (p.queues - 1).bit_length())
    for selector in sorted({p.queues, 1 << qbits, 0x10000, 0xFFFF_FFFF, 0x8000_0000}):
        await tb.write("QueueSel", selector)
        await tb.expect("QueueNumMax", 0)
        await tb.expect("QueueReady", 0)
        await tb.write("QueueNum", 1)
        for name in ("Desc", "Driver", "Device"):
            await tb.write(f"Queue{name}Low", rng.getrandbits(32))
            await tb.write(f"Queue{name}High", rng.getrandbits(32))
        await tb.write("QueueReady", 1)
        await tb.expect("QueueReady", 0)
    for queue in range(p.queues):
        assert await tb.queue_state(queue) == tb.reset_queue_state(queue)

    # QueueNum 0 or above QueueNumMax is ignored.
    queue = rng.randrange(p.queues)
    size = p.queue_sizes[queue]
    await tb.write("QueueSel", queue)
    await tb.write("QueueNum", 0)
    await tb.write("QueueNum", size + 1)
    assert (await tb.queue_state(queue)).num == size
    setup = tb.random_queue_setup(queue)
    await tb.driver.setup_queue(**setup)
    ready = QueueState(1, setup["size"], setup["desc"], setup["driver"], setup["device"])
    assert await tb.queue_state(queue) == ready
    # A ready queue ignores its size and addresses.
    await tb.write("QueueNum", 1)
    await tb.write("QueueDescLow", 0x40)
    await tb.write("QueueDeviceHigh", 0x1)
    assert await tb.queue_state(queue) == ready
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_status_rules(dut, timing):
    """Status writes that clear bits are ignored, the driver cannot set DEVICE_NEEDS_RESET,
    FEATURES_OK is refused for an un-offered feature or without VERSION_1, DriverFeatures is
    frozen once FEATURES_OK is set, feature selectors >= 2."""
    tb = await Testbench.start(dut, timing=timing)
    p, driver = tb.p, tb.driver
    ack_drv = Status.ACKNOWLEDGE | Status.DRIVER
    await driver.probe()
    await driver.reset()
    await driver.add_status(Status.ACKNOWLEDGE)
    await driver.add_status(Status.DRIVER)
    await tb.write("Status", Status.ACKNOWLEDGE)                  # clears DRIVER: ignored
    await tb.expect("Status", ack_drv)
    await tb.write("Status", Status.DRIVER)                       # clears ACKNOWLEDGE
    await tb.expect("Status", ack_drv)
    await tb.write("Status", ack_drv | Status.DEVICE_NEEDS_RESET)  # bit 6 is the device's
    await tb.expect("Status", ack_drv)

    # Feature selectors >= 2.
    await tb.write("DeviceFeaturesSel", 2)
    await tb.expect("DeviceFeatures", 0)
    await tb.write("DeviceFeaturesSel", 1)
    await tb.expect("DeviceFeatures", p.features >> 32)

    # An un-offered bit: FEATURES_OK refused, the other bits of that write apply.
    bad = p.features | 1 << tb.offered_bit_missing()
    await driver.write_driver_features(bad)
    await tb.write("Status", ack_drv | Status.FEATURES_OK | Status.DRIVER_OK)
    await tb.expect("Status", ack_drv | Status.DRIVER_OK)
    await tb.cycles(1)
    assert value(dut.features) == 0 and value(dut.driver_ok) == 1

    # A selector >= 2 is ignored by DriverFeatures; then a valid set is taken.
    await driver.write_driver_features(p.features)
    await tb.write("DriverFeaturesSel", 2)
    await tb.write("DriverFeatures", ALL_ONES_32)
    await tb.write("Status", ack_drv | Status.DRIVER_OK | Status.FEATURES_OK)
    await tb.expect("Status", ack_drv | Status.DRIVER_OK | Status.FEATURES_OK)
    await tb.cycles(1)
    assert value(dut.features) == p.features

    # Frozen once FEATURES_OK is set.
    await driver.write_driver_features(p.features & ~(1 << Feature.VERSION_1))
    await tb.cycles(1)
    assert value(dut.features) == p.features

    # Without VERSION_1: refused.
    await driver.reset()
    await driver.add_status(ack_drv)
    await driver.write_driver_features(p.features & ~(1 << Feature.VERSION_1))
    await driver.add_status(Status.FEATURES_OK)
    await tb.expect("Status", ack_drv)

    # DEVICE_NEEDS_RESET is kept by writes that do not mention it, cleared by a device reset.
    tb.device.raise_needs_reset()
    await tb.cycles(4)
    await tb.expect("Status", ack_drv | Status.DEVICE_NEEDS_RESET)
    await tb.write("Status", ack_drv | Status.FAILED)
    await tb.expect("Status", ack_drv | Status.DEVICE_NEEDS_RESET | Status.FAILED)
    await driver.reset()
    await tb.expect("Status", 0)
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_device_reset_mid_setup(dut, timing):
    """Status = 0 in the middle of a queue setup clears every piece of driver-visible state
    (docs/spec.md §5) before the next access, keeps ConfigGeneration, pulses device_reset once."""
    tb = await Testbench.start(dut, timing=timing)
    p, device = tb.p, tb.device
    await tb.driver.probe()
    await tb.driver.reset()
    await tb.driver.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
    await tb.driver.negotiate(driver_features=p.features)
    if p.queues > 1:
        await tb.driver.setup_queue(**tb.random_queue_setup(0))
    partial = p.queues - 1
    await tb.write("QueueSel", partial)
    await tb.write("QueueNum", 1)
    await tb.write("QueueDescLow", 0x1000)
    await tb.write("QueueDriverHigh", 0x2)
    await tb.write("DeviceFeaturesSel", 1)
    await tb.write("DriverFeaturesSel", 1)
    await tb.write("SHMSel", 0xFF)
    device.used(0)
    device.config_event()
    device.notify_ready_probability = 0.0
    await tb.cycles(2)
    await tb.write("QueueNotify", 0)
    await tb.cycles(2)
    assert value(dut.notify_valid) == 1 and value(dut.irq) == 1
    generation = await tb.read("ConfigGeneration")
    resets = device.device_resets
    assert generation == device.generation

    await tb.write("Status", 0)
    # The very next accesses see the reset state.
    await tb.expect("Status", 0)
    await tb.expect("InterruptStatus", 0)
    await tb.expect("QueueNumMax", p.queue_sizes[0])           # QueueSel back to 0
    await tb.expect("QueueReady", 0)
    await tb.expect("DeviceFeatures", p.features & ALL_ONES_32)  # DeviceFeaturesSel 0
    region0 = next((r for r in p.shm if r.id == 0), None)
    await tb.expect("SHMLenLow", ALL_ONES_32 if region0 is None else region0.length & ALL_ONES_32)
    await tb.expect("ConfigGeneration", generation)
    await tb.cycles(2)
    for port in ("irq", "notify_valid", "status", "driver_ok", "features"):
        assert value(getattr(dut, port)) == 0, f"{port} not cleared by the device reset"
    assert device.device_resets == resets + 1, "device_reset must pulse for exactly one cycle"
    for queue in range(p.queues):
        assert await tb.queue_state(queue) == tb.reset_queue_state(queue), f"queue {queue}"
    count = len(device.notifications)
    device.notify_ready_probability = 1.0
    await tb.cycles(10)
    assert len(device.notifications) == count, "a notification survived the device reset"

    # Accepted features were cleared: FEATURES_OK without writing them lacks VERSION_1.
    await tb.driver.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
    await tb.driver.add_status(Status.FEATURES_OK)
    await tb.expect("Status", Status.ACKNOWLEDGE | Status.DRIVER)
    # And a complete bring-up works afterwards.
    setups = await tb.bring_up()
    for setup in setups:
        assert (await tb.queue_state(setup["index"])).ready == 1
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_concurrent_access(dut, timing):
    """Many reads and writes in flight at once (AXI: with random pauses on all five channels;
    Wishbone: queued by concurrent callers), notifications among them: every read returns the
    right value, every notification arrives in order."""
    tb = await Testbench.start(dut, timing=timing)
    if timing == "random":
        tb.set_timing("random", backpressure=True)
    p, device, rng, bus = tb.p, tb.device, tb.rng, tb.bus
    await tb.bring_up()
    status = await tb.read("Status")
    shm_words = {}
    for name in ("SHMLenLow", "SHMLenHigh", "SHMBaseLow", "SHMBaseHigh"):
        shm_words[tb.off(name)] = await tb.read(name)
    constants = {
        tb.off("MagicValue"): MAGIC_VALUE, tb.off("Version"): p.version,
        tb.off("DeviceID"): p.device_id, tb.off("VendorID"): p.advertised_vendor_id,
        tb.off("QueueNotify"): p.notify_layout, tb.off("Status"): status,
        tb.off("ConfigGeneration"): device.generation,
        tb.off("QueueNumMax"): p.queue_sizes[p.queues - 1],   # the driver's last QueueSel
        tb.off("QueueReady"): 1, tb.off("InterruptStatus"): 0,
        **shm_words,
    }
    for word in tb.regs.reserved_words()[:4]:
        constants[4 * word] = 0
    device.notify_ready_probability = 0.4
    data_mode = bool(tb.driver.features >> Feature.NOTIFICATION_DATA & 1)
    failures = []

    async def reader(count):
        for _ in range(count):
            offset = rng.choice(list(constants))
            got = await bus.read(offset)
            if got != constants[offset]:
                failures.append(f"read {offset:#x}: {got:#x}, expected {constants[offset]:#x}")

    async def config_owner(word, count):
        offset = CONFIG_BASE + 4 * word
        for _ in range(count):
            data = rng.getrandbits(32)
            await bus.write(offset, data)
            got = await bus.read(offset)
            if got != data:
                failures.append(f"config word {word}: wrote {data:#x}, read {got:#x}")

    expected_notifications = []

    async def notifier(count):
        for _ in range(count):
            queue = rng.randrange(p.queues)
            word = (rng.getrandbits(16) << 16 | queue) if data_mode else queue
            expected_notifications.append(expected_notification(tb, word))
            await bus.write(tb.off("QueueNotify"), word)

    workers = [reader(100) for _ in range(6)]
    workers += [config_owner(word, 40) for word in range(min(4, p.config_size // 4))]
    workers.append(notifier(100))
    await gather(*workers)
    assert not failures, "\n".join(failures[:20])
    await tb.wait_for(lambda: len(device.notifications) >= len(expected_notifications), 1000,
                      "the notifications")
    assert device.notifications == expected_notifications
    if p.bus == "axil":
        log.info("AXI concurrency: up to %d reads outstanding, %d cycles with a read and a "
                 "write handshake together", device.max_reads_outstanding, device.overlap_cycles)
        if timing == "random":
            assert device.max_reads_outstanding >= 2, "reads were never outstanding together"
        assert device.overlap_cycles > 0, "reads and writes never overlapped on the bus"
    await tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(timing=TIMINGS)
async def test_reset_during_traffic(dut, timing):
    """rst in the middle of transactions (AXI: reads, writes and a notify write waiting on the
    bus; Wishbone: between bus cycles, as the bus model cannot abandon one) clears every buffer
    and all state, ConfigGeneration included; no stale response appears; the bus works on."""
    tb = await Testbench.start(dut, timing=timing)
    p, device, rng = tb.p, tb.device, tb.rng
    stop = False
    cancelled = []

    async def traffic():
        while not stop:
            choice = rng.random()
            try:
                if choice < 0.4:
                    await tb.read("MagicValue")
                elif choice < 0.6 and p.config_size:
                    await tb.bus.write(CONFIG_BASE, rng.getrandbits(32))
                elif choice < 0.8:
                    await tb.write("QueueNotify", 0)     # blocks: the stream is stopped
                else:
                    await tb.read("Status")
            except BusError as error:
                cancelled.append(str(error))

    for _ in range(3):
        await tb.bring_up()
        device.config_event()
        device.used(0)
        device.notify_ready_probability = 0.0
        await tb.cycles(4)
        await tb.write("QueueNotify", 0)        # waits in the endpoint: the stream is stopped
        assert await tb.read("ConfigGeneration") == device.generation == 1
        assert value(dut.irq) == 1 and value(dut.notify_valid) == 1

        stop = False
        cancelled.clear()
        workers = []
        if p.bus == "axil":
            workers = [cocotb.start_soon(traffic()) for _ in range(4)]
            await tb.cycles(rng.randint(10, 60))
        await FallingEdge(dut.clk)
        dut.rst.value = 1
        stop = True
        await tb.cycles(rng.randint(1, 4))
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for worker in workers:
            await with_timeout(worker, 100 * CLOCK_NS, "ns")
        if p.bus == "axil":
            assert cancelled, "no transaction was in flight when rst rose"
            for _ in range(4):
                assert not value(dut.s_axil_bvalid) and not value(dut.s_axil_rvalid), \
                    "a response from before the reset appeared"
                await FallingEdge(dut.clk)
        device.generation = 0                            # rst clears ConfigGeneration

        for port in ("irq", "notify_valid", "status", "driver_ok", "features"):
            assert value(getattr(dut, port)) == 0, f"{port} not cleared by rst"
        await tb.expect("Status", 0)
        await tb.expect("InterruptStatus", 0)
        await tb.expect("ConfigGeneration", 0)
        await tb.expect("QueueNumMax", p.queue_sizes[0])
        states = await tb.queue_states(list(range(p.queues)))
        assert states == [tb.reset_queue_state(q) for q in range(p.queues)]
        count = len(device.notifications)
        device.notify_ready_probability = 1.0
        await tb.cycles(10)
        assert len(device.notifications) == count, "a notification survived rst"
        await tb.write("QueueNotify", p.queues - 1)
        await tb.wait_for(lambda: len(device.notifications) > count, 100, "a notification")
        assert device.notifications[count:] == [(p.queues - 1, p.queues - 1)]
    await tb.finish()


@cocotb.skipif(PARAMS is not None and not PARAMS.has_doorbells,
               reason="the profile has no doorbells")
@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def test_doorbells(dut):
    """seed: a full write at notify_base + q * notify_multiplier is a notification for queue q
    with the word as written (docs/spec.md §6); doorbells read 0. Then every queue's doorbell
    through the driver (which read the layout at probe) while the device holds the stream back for
    long random stretches: nothing lost, nothing duplicated, order kept, and on AXI reads of
    other registers complete while a notification waits on the bus."""
    tb = await Testbench.start(dut)
    p, device, rng = tb.p, tb.device, tb.rng
    await tb.bring_up()
    expected = []
    for _ in range(20):
        queue = rng.randrange(p.queues)
        word = rng.getrandbits(32)
        if p.notify_multiplier:
            await tb.bus.write(p.notify_base + queue * p.notify_multiplier, word)
            expected.append((queue, word))
        else:
            await tb.bus.write(p.notify_base, queue)
            expected.append((queue, queue))
    await tb.wait_for(lambda: len(device.notifications) >= len(expected), 500,
                      "the doorbell notifications")
    assert device.notifications == expected
    assert await tb.bus.read(p.notify_base) == 0

    assert tb.driver.info.notify_layout == (p.notify_base, p.notify_multiplier)
    done = []

    async def hold_back():
        # Stopped first, so a notification certainly waits while the reads go on (random
        # stretches alone may let the few doorbell writes through without one); then long
        # stretches with the stream stopped, others with it flowing at random.
        device.notify_ready_probability = 0.0
        await tb.cycles(200)
        while not done:
            device.notify_ready_probability = rng.choice((0.0, 0.0, 0.5, 1.0))
            await tb.cycles(rng.randint(20, 200))
        device.notify_ready_probability = 1.0

    reads_while_blocked = [0]

    async def read_meanwhile():
        while not done:
            blocked = value(dut.notify_valid) and not value(dut.notify_ready)
            assert await tb.read("MagicValue") == MAGIC_VALUE
            reads_while_blocked[0] += blocked

    count = len(device.notifications)
    holder = cocotb.start_soon(hold_back())
    reader = cocotb.start_soon(read_meanwhile()) if p.bus == "axil" else None
    sent = []
    for _ in range(4):
        for queue in rng.sample(range(p.queues), p.queues):
            await tb.driver.notify(queue)
            sent.append((queue, queue))
    done.append(True)
    await holder
    if reader is not None:
        await reader
        assert reads_while_blocked[0] > 0
    await tb.wait_for(lambda: len(device.notifications) >= count + len(sent), 2000,
                      "every doorbell notification")
    await tb.cycles(10)
    assert device.notifications[count:] == sent
    await tb.finish()
