"""The virtio-rng example device (rtl/devices/rng.py).

* Construction and validation, and ``generate --device rng``.
* Amaranth's simulator: the rng endpoint, the driver model (sim/rng_driver.py) on its
  AXI4-Lite or Wishbone subordinate port and a Python memory model on its DMA port (zero wait
  or random stalls); a few hundred buffers (direct chains and indirect tables, with and
  without EVENT_IDX, every used-buffer event checked against the EVENT_IDX rule), malformed
  rings and indirect tables, kick and interrupt suppression, and the clocks per buffer.
* cocotb (marker ``cocotb``): ``virtio_mmio_sim.cocotb_tests.test_rng`` on the generated
  Verilog with Verilator, cocotbext-axi's AxiLiteRam (or a Wishbone RAM model) as guest
  memory; builds cached under ``build/cocotb/rng-<config>/``.
"""

import json
import random
from pathlib import Path

import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from virtio_mmio.tools.cli import main as cli_main
from virtio_mmio.tools.generate import generate_verilog
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature, Status
from virtio_mmio.devices.rng import (DEFAULT_SEED, RNG_DEFAULT_FEATURES, VirtioRngDevice,
                             VirtioRngEndpoint, check_rng_params, rng_params, rng_port_members)
from virtio_mmio_sim.amaranth_bus import AmaranthAxiLite, AmaranthWishbone
from virtio_mmio_sim.driver import VirtioMmioDriver
from virtio_mmio_sim.rng_driver import (EventScoreboard, GuestMemory, RingLayout,
                                        UnmappedAccess, VirtioRngDriver, Xorshift32,
                                        need_event, publish_malformed, MALFORMED_RING,
                                        MALFORMED_INDIRECT, AVAIL_F_NO_INTERRUPT)


ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"

VERSION_1 = 1 << Feature.VERSION_1
INDIRECT = 1 << Feature.RING_INDIRECT_DESC
EVENT_IDX = 1 << Feature.RING_EVENT_IDX


# ------------------------------------------------------------------------------ construction

def test_rng_params_defaults():
    p = rng_params()
    assert (p.device_id, p.queues, p.queue_sizes, p.config_size, p.features) == \
        (4, 1, (8,), 0, VERSION_1 | INDIRECT | EVENT_IDX)
    assert RNG_DEFAULT_FEATURES == VERSION_1 | INDIRECT | EVENT_IDX
    for features in (VERSION_1, VERSION_1 | INDIRECT, VERSION_1 | EVENT_IDX):
        assert rng_params(features=features).features == features


@pytest.mark.parametrize("kwargs,message", [
    (dict(queues=2), r"^queues must be 1 for the rng device"),
    (dict(device_id=1), r"^device_id must be 4"),
    (dict(queue_size=12), r"^queue_size must be a power of two"),
    (dict(config_size=4), r"^config_size must be 0"),
    (dict(features=VERSION_1 | (1 << Feature.RING_PACKED)), r"^features must be a subset of"),
])
def test_rng_params_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rng_params(**kwargs)


def test_check_rng_params_type():
    with pytest.raises(TypeError, match="params must be an EndpointParams"):
        check_rng_params({"queues": 1})


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(seed=0), ValueError, r"^seed must be a non-zero 32-bit integer"),
    (dict(seed=1 << 32), ValueError, r"^seed must be a non-zero 32-bit integer"),
    (dict(seed="1"), TypeError, r"^seed must be an integer"),
    (dict(bus="apb"), ValueError, r"^bus must be one of axil, wishbone"),
    (dict(bus="wishbone", wishbone_mode="burst"), ValueError, r"^wishbone_mode must be one of"),
])
def test_device_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        VirtioRngDevice(**kwargs)


def test_endpoint_rejects_wrong_params():
    with pytest.raises(ValueError, match=r"^queues must be 1"):
        VirtioRngEndpoint(EndpointParams(queues=2, config_size=0, queue_size=8))
    with pytest.raises(TypeError, match="either params or keyword arguments"):
        VirtioRngEndpoint(rng_params(), queues=1)


@pytest.mark.parametrize("bus,mode", [("axil", "classic"), ("wishbone", "pipelined")])
def test_ports(bus, mode):
    members = rng_port_members(rng_params(bus=bus, wishbone_mode=mode))
    prefix = "m_dma_axil" if bus == "axil" else "m_dma_wb"
    if bus == "axil":
        for name in ("awaddr", "araddr"):
            assert Shape.cast(members[f"{prefix}_{name}"].shape).width == 64
        assert "s_axil_awaddr" in members and "m_axil_awaddr" in members
    else:
        assert Shape.cast(members[f"{prefix}_adr"].shape).width == 62
        assert f"{prefix}_stall" in members and f"{prefix}_dat_r" in members
    for gone in ("notify_valid", "used_valid", "needs_reset", "q_sel", "cfg_re"):
        assert gone not in members
    for kept in ("irq", "msi_error", "status", "driver_ok", "device_reset", "features",
                 "config_changed", "rng_busy", "rng_broken", "rng_buffers", "rng_used_event"):
        assert kept in members


def test_generate_verilog_device():
    text = generate_verilog(rng_params(profile="plain-v2", name="rng_top"), device="rng")
    assert "module rng_top" in text
    for port in ("m_dma_axil_araddr", "m_dma_axil_awaddr", "s_axil_awaddr", "irq"):
        assert port in text
    with pytest.raises(ValueError, match=r"^device must be one of none, rng"):
        generate_verilog(rng_params(), device="blk")
    with pytest.raises(ValueError, match=r"^queues must be 1"):
        generate_verilog(EndpointParams(queues=2), device="rng")


def test_cli_generate_device_rng(tmp_path, capsys):
    out = tmp_path / "rng.v"
    assert cli_main(["generate", "--device", "rng", "--profile", "plain-v2", "--no-artefacts",
                     "-o", str(out)]) == 0
    text = out.read_text()
    assert "m_dma_axil_rready" in text
    assert "virtio_mmio_endpoint" in text


@pytest.mark.parametrize("args,features", [
    (["--device", "rng"], VERSION_1 | INDIRECT | EVENT_IDX),
    (["--device", "rng", "--features", hex(VERSION_1)], VERSION_1),
    ([], VERSION_1),
])
def test_cli_device_rng_default_features(args, features):
    from virtio_mmio.tools.cli import build_parser, params_from_args
    parsed = build_parser().parse_args(["generate", *args, "-o", "x.v"])
    assert params_from_args(parsed).features == features


@pytest.mark.parametrize("args,option", [
    (["--queues", "2"], "--queues"),
    (["--device-id", "1"], "--device-id"),
    (["--config-size", "16"], "--config-size"),
    (["--queue-size", "12"], "--queue-size"),
])
def test_cli_generate_device_rng_errors(tmp_path, capsys, args, option):
    assert cli_main(["generate", "--device", "rng", "--no-artefacts", "-o",
                     str(tmp_path / "x.v"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0], err


# ------------------------------------------------------------------------------ simulator

#: Guest-physical layout for the simulator tests: rings above 4 GiB with high bits set, data
#: in a second window.
RING_BASE = 0xC0DE_0001_0000_0000
DATA_BASE = 0x0000_0008_4000_0000
DATA_SIZE = 0x1_0000
#: Indirect tables: the upper half of the ring window.
TABLES = (RING_BASE + 0x800, 0x800)


def _memory():
    memory = GuestMemory(size=0x2_0000)
    memory.add_window(RING_BASE, 0x1000)
    memory.add_window(DATA_BASE, DATA_SIZE)
    return memory


class AxiLiteMemoryModel:
    """A Python AXI4-Lite subordinate on ``m_dma_axil_*`` serving :class:`GuestMemory`: one
    access at a time, answered in the cycle after the handshake (zero wait), or with random
    readiness and answer delays when ``stall`` > 0. Unmapped addresses answer SLVERR.
    ``writes`` records ``(address, data, strobe)``; ``log`` every access in order;
    ``read_hooks`` are called with ``(address, word)`` for every read served."""

    def __init__(self, dut, memory, *, stall=0.0, seed=0):
        self.dut, self.memory, self.stall = dut, memory, stall
        self.rng = random.Random(seed)
        self.writes = []
        self.log = []
        self.read_hooks = []

    def _pause(self):
        return self.stall and self.rng.random() < self.stall

    async def process(self, ctx):
        d = self.dut
        read_answer = write_answer = None
        write_address = write_data = None
        while True:
            ctx.set(d.dma.arready, read_answer is None and not self._pause())
            ctx.set(d.dma.awready, write_address is None and not self._pause())
            ctx.set(d.dma.wready, write_data is None and not self._pause())
            r_out = read_answer is not None and not self._pause()
            b_out = write_answer is not None and not self._pause()
            ctx.set(d.dma.rvalid, r_out)
            ctx.set(d.dma.bvalid, b_out)
            if r_out:
                ctx.set(d.dma.rdata, read_answer[0])
                ctx.set(d.dma.rresp, read_answer[1])
            if b_out:
                ctx.set(d.dma.bresp, write_answer)
            _, _, arv, arr, ara, awv, awr, awa, wv, wr, wd, ws, rr, br = await ctx.tick().sample(
                d.dma.arvalid, d.dma.arready, d.dma.araddr,
                d.dma.awvalid, d.dma.awready, d.dma.awaddr,
                d.dma.wvalid, d.dma.wready, d.dma.wdata,
                d.dma.wstrb, d.dma.rready, d.dma.bready)
            if r_out and rr:
                read_answer = None
            if b_out and br:
                write_answer = None
            if arv and arr:
                try:
                    read_answer = (self.memory.read_u32(ara), 0)
                    for hook in self.read_hooks:
                        hook(ara, read_answer[0])
                except UnmappedAccess:
                    read_answer = (0, 2)
                self.log.append(("R", ara))
            if awv and awr:
                write_address = awa
            if wv and wr:
                write_data = (wd, ws)
            if write_address is not None and write_data is not None:
                write_answer = self._write(write_address, *write_data)
                write_address = write_data = None

    def _write(self, address, data, strobe):
        self.writes.append((address, data, strobe))
        self.log.append(("W", address))
        raw = data.to_bytes(4, "little")
        try:
            for lane in range(4):
                if strobe >> lane & 1:
                    self.memory.write(address + lane, raw[lane:lane + 1])
        except UnmappedAccess:
            return 2
        return 0


class WishboneMemoryModel:
    """A Python Wishbone subordinate on ``m_dma_wb_*`` (classic or pipelined) serving
    :class:`GuestMemory`: answers one cycle after the request, or after random delays (and
    with random ``stall``) when ``stall`` > 0; unmapped addresses answer ``err``."""

    def __init__(self, dut, memory, *, stall=0.0, seed=0):
        self.dut, self.memory, self.stall = dut, memory, stall
        self.rng = random.Random(seed)
        self.pipelined = hasattr(dut.dma, "stall")
        self.writes = []
        self.read_hooks = []

    async def process(self, ctx):
        d = self.dut
        answer = None
        wait = 0
        taken = False
        while True:
            stall = bool(self.stall and self.rng.random() < self.stall)
            if self.pipelined:
                ctx.set(d.dma.stall, stall or taken)
            out = answer is not None and wait == 0
            ctx.set(d.dma.ack, out and answer[1] == 0)
            ctx.set(d.dma.err, out and answer[1] != 0)
            ctx.set(d.dma.dat_r, answer[0] if out else 0)
            _, _, cyc, stb, we, adr, dat, sel = await ctx.tick().sample(
                d.dma.cyc, d.dma.stb, d.dma.we, d.dma.adr, d.dma.dat_w,
                d.dma.sel)
            if out:
                answer, taken = None, False
                continue
            if answer is not None:
                wait -= 1
                continue
            if cyc and stb and not (self.pipelined and (stall or taken)):
                answer = self._serve(adr << 2, we, dat, sel)
                taken = True
                wait = self.rng.choice((0, 0, 1, 3)) if self.stall else 0

    def _serve(self, address, we, data, sel):
        try:
            if not we:
                word = self.memory.read_u32(address)
                for hook in self.read_hooks:
                    hook(address, word)
                return word, 0
            self.writes.append((address, data, sel))
            raw = data.to_bytes(4, "little")
            for lane in range(4):
                if sel >> lane & 1:
                    self.memory.write(address + lane, raw[lane:lane + 1])
            return 0, 0
        except UnmappedAccess:
            return 0, 1


def simulate_rng(params, body, *, stall=0.0, seed=1, timeout_cycles=400_000,
                 interrupt_delay=None):
    """Run ``body(ctx, dut, driver, model)`` against the rng endpoint of ``params`` with a
    memory model on its DMA port; ``driver`` is a :class:`VirtioRngDriver` waiting on the
    ``irq`` pin, with indirect tables in :data:`TABLES`. Whenever the driver negotiated
    EVENT_IDX, ``model.scoreboard`` (an :class:`EventScoreboard`) replays every used-buffer
    event decision of the device (its used_event reads, its ``rng_used_event`` pulses, device
    resets); the run fails on any mismatch. ``model.busy_rises`` and ``model.events`` are the
    cycles at which ``rng_busy`` rose and ``rng_used_event`` pulsed."""
    dut = VirtioRngEndpoint(params)
    memory = _memory()
    if params.bus == "axil":
        model = AxiLiteMemoryModel(dut, memory, stall=stall, seed=seed)
    else:
        model = WishboneMemoryModel(dut, memory, stall=stall, seed=seed)
    model.scoreboard = scoreboard = EventScoreboard()
    layout = RingLayout.packed(params.queue_sizes[0], RING_BASE + 0x100)
    drivers = []

    def event_idx():
        return drivers and drivers[0].event_idx and drivers[0].layout == layout

    def on_read(address, word):
        if event_idx() and address == layout.used_event & ~3:
            used_event = word >> 8 * (layout.used_event & 3) & 0xFFFF
            scoreboard.decision(memory.read_u16(layout.used + 2), used_event)

    model.read_hooks.append(on_read)

    model.busy_rises, model.events = [], []

    async def event_monitor(ctx):
        cycle = 0
        was_busy = False
        async for _, _, event, device_reset, busy in ctx.tick().sample(
                dut.rng_used_event, dut.device_reset, dut.rng_busy):
            cycle += 1
            if busy and not was_busy:
                model.busy_rises.append(cycle)
            was_busy = busy
            if event:
                model.events.append(cycle)
            if device_reset:
                scoreboard.reset()
            if event and event_idx():
                scoreboard.event()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(model.process)
    sim.add_process(event_monitor)
    finished = []

    async def testbench(ctx):
        pause_rng = random.Random(seed + 1)
        pause = (lambda: pause_rng.random() < stall) if stall else None
        if params.bus == "axil":
            bus = AmaranthAxiLite(ctx, dut, pause=pause)
        else:
            bus = AmaranthWishbone(ctx, dut, pause=pause)

        async def wait_irq():
            if not ctx.get(dut.irq):
                await ctx.tick().until(dut.irq)

        driver = VirtioRngDriver(VirtioMmioDriver(bus, params.profile), memory, layout,
                                 wait_interrupt=wait_irq, tables=TABLES,
                                 interrupt_delay=interrupt_delay)
        drivers.append(driver)
        await body(ctx, dut, driver, model)
        # The last decision's event, if one is due, is a cycle behind the used ring.
        await ctx.tick().repeat(4)
        finished.append(True)

    sim.add_testbench(testbench)
    expired = []

    async def watchdog(ctx):
        for _ in range(timeout_cycles):
            await ctx.tick()
        expired.append(True)

    sim.add_testbench(watchdog, background=True)
    while sim.advance():
        if expired:
            raise TimeoutError(f"testbench did not finish within {timeout_cycles} cycles")
    assert finished
    assert not scoreboard.finish(), scoreboard.errors[:5]
    return dut


def _random_segments(rng, allocator, max_segments=3):
    count = rng.choice((1, 1, 1, 2, max_segments))
    return [(allocator(length), length)
            for length in (rng.randint(1, 256) for _ in range(count))]


def _random_indirect(rng, driver, segments):
    """How to post ``segments``: direct, all in an indirect table, or (chains) the first one
    direct and the rest in a table — at random when INDIRECT_DESC was negotiated."""
    if not driver.indirect:
        return False
    choices = [False, True] + ([1] if len(segments) > 1 else [])
    return rng.choice(choices)


def _allocator(rng, slot_size=512):
    """Buffer addresses at a random byte inside 512-byte slots taken in turn, so the buffers
    in flight never overlap."""
    slots = DATA_SIZE // slot_size
    counter = iter(range(1 << 62))

    def allocate(length):
        slot = next(counter) % slots
        return DATA_BASE + slot * slot_size + rng.randrange(0, slot_size - length + 1)
    return allocate


@pytest.mark.parametrize("bus,mode,stall,features", [
    ("axil", "classic", 0.0, VERSION_1 | INDIRECT | EVENT_IDX),
    ("axil", "classic", 0.4, VERSION_1 | INDIRECT),
    ("wishbone", "classic", 0.3, VERSION_1 | EVENT_IDX),
    ("wishbone", "pipelined", 0.3, VERSION_1 | INDIRECT | EVENT_IDX),
])
def test_simulated_traffic(bus, mode, stall, features):
    """250 buffers of random lengths and chains, direct or in indirect tables when the driver
    negotiated INDIRECT_DESC; with EVENT_IDX the driver kicks only when avail_event asks and
    lets a random number of used buffers pass before its next interrupt. Every buffer comes
    back once with its length and the predicted bytes; the scoreboard checks every
    used-buffer event decision."""
    count = 250
    params = rng_params(profile="plain-v2", bus=bus, wishbone_mode=mode)
    rng = random.Random(7)
    predictor = Xorshift32(DEFAULT_SEED)

    async def body(ctx, dut, driver, model):
        await driver.initialize(driver_features=features)
        assert driver.features == features
        posted = []
        returned = []
        allocate = _allocator(rng)
        while len(returned) < count:
            while len(posted) - len(returned) < 6 and len(posted) < count:
                segments = _random_segments(rng, allocate)
                indirect = _random_indirect(rng, driver, segments)
                if not driver.can_post(len(segments), indirect):
                    break
                posted.append(driver.post(segments, indirect=indirect))
            await driver.kick()
            # Now and then one more while the device is (probably) still at work: with
            # EVENT_IDX avail_event is behind, so the kick is left out.
            # With EVENT_IDX, re-arm used_event then, letting a random number of the buffers
            # in flight pass: a batch that ends short of it raises no event.
            done = []
            if len(posted) < count and driver.can_post(1) and rng.random() < 0.5:
                await ctx.tick().repeat(rng.randint(1, 60))
                posted.append(driver.post([(allocate(16), 16)]))
                await driver.kick()
                if driver.event_idx:
                    done += driver.rearm()
            if not done and driver.event_idx and rng.random() < 0.15:
                # A polling round: used_event left behind the used index, so the batches
                # now ending must raise nothing; then re-armed.
                driver.set_used_event(driver.last_used - rng.randint(1, 4))
                while driver.used_idx() != driver.avail_idx or ctx.get(dut.rng_busy):
                    await ctx.tick()
                await ctx.tick().repeat(4)
                done = driver.harvest() + driver.rearm()
            if not done:
                done = await driver.wait_used(1)
            for buffer in done:
                expected = b"".join(predictor.fill(a, n) for a, n in buffer.segments)
                assert buffer.data == expected
                returned.append(buffer)
        assert [id(b) for b in returned] == [id(b) for b in posted]
        assert not await driver.needs_reset()
        assert ctx.get(dut.rng_buffers) == count
        if features & INDIRECT:
            assert sum(b.table is not None for b in posted) > count // 3
        if features & EVENT_IDX:
            assert driver.kicks_suppressed > 0 and driver.kicks > 0
            assert model.scoreboard.raised > 0 and model.scoreboard.suppressed > 0
        else:
            assert driver.kicks_suppressed == 0

    delay_rng = random.Random(11)
    simulate_rng(params, body, stall=stall,
                 interrupt_delay=lambda in_flight: delay_rng.randrange(in_flight))


@pytest.mark.parametrize("features", [VERSION_1 | INDIRECT, VERSION_1 | INDIRECT | EVENT_IDX])
def test_clocks_per_buffer(features):
    """The latency figures of the docstring: leaving idle → used-buffer event (``irq`` one
    clock later) for one 64-byte buffer, a batch of eight, and one 64-byte buffer through an
    indirect table; zero-wait memory."""
    params = rng_params(profile="plain-v2")
    figures = {}

    async def body(ctx, dut, driver, model):
        await driver.initialize(driver_features=features)
        for name, count, indirect in (("1", 1, False), ("8", 8, False),
                                      ("indirect", 1, True)):
            for i in range(count):
                driver.post([(DATA_BASE + 0x100 * i, 64)], indirect=indirect)
            assert await driver.kick()
            await driver.wait_used(count)
            event = model.events[-1]
            figures[name] = event - max(r for r in model.busy_rises if r < event)
        assert await driver.transport.read("InterruptStatus") == 0

    simulate_rng(params, body)
    print(f"leaving idle -> used event, 64-byte buffers, features {features:#x}: {figures}")
    # Two clocks per access; EVENT_IDX adds the avail_event write to every batch.
    single = 53 + (2 if features & EVENT_IDX else 0)
    assert figures == {"1": single, "8": single + 7 * 48, "indirect": single + 8}, figures


@pytest.mark.parametrize("case", [*MALFORMED_RING, "misaligned-used", *MALFORMED_INDIRECT])
def test_malformed_ring(case):
    params = rng_params(profile="plain-v2")
    predictor = Xorshift32(DEFAULT_SEED)
    features = VERSION_1 | EVENT_IDX if case == "indirect-not-negotiated" else None

    async def body(ctx, dut, driver, model):
        await driver.initialize(driver_features=features)
        layout = driver.layout
        driver.post([(DATA_BASE, 16)])
        await driver.kick()
        (back,) = await driver.wait_used(1)
        assert back.data == predictor.fill(DATA_BASE, 16)
        used_before = driver.used_idx()

        if case != "misaligned-used":
            publish_malformed(driver, case, table=driver.tables[0], data=DATA_BASE,
                              unmapped=0xDEAD_0000_0000_0000)
        await driver.kick(force=True) if case != "misaligned-used" else None
        if case == "misaligned-used":
            # A used ring off its 4-byte alignment is refused at the first kick.
            await driver.reset()
            bad = RingLayout(layout.size, layout.desc, layout.avail, layout.used + 2)
            driver.layout = bad
            await driver.initialize()
            driver.post([(DATA_BASE, 16)])
            await driver.kick(force=True)
        await ctx.tick().repeat(400)
        status = await driver.status()
        assert status & Status.DEVICE_NEEDS_RESET, f"{status:#x}"
        assert ctx.get(dut.rng_broken)
        # INTx: a configuration-change interrupt came with it.
        assert await driver.transport.read("InterruptStatus") & 2
        # Stopped: a further kick does nothing.
        used_now = driver.memory.read_u16(driver.layout.used + 2)
        await driver.kick(force=True)
        await ctx.tick().repeat(200)
        assert driver.memory.read_u16(driver.layout.used + 2) == used_now
        assert not ctx.get(dut.rng_busy)
        if case != "misaligned-used":
            assert used_now == used_before

        # Reset and a fresh start work again.
        driver.layout = layout
        await driver.reset()
        assert not ctx.get(dut.rng_broken)
        await driver.initialize(driver_features=features)
        indirect = driver.indirect
        buffer = driver.post([(DATA_BASE + 0x800, 20)], indirect=indirect)
        assert await driver.kick()
        (back,) = await driver.wait_used(1)
        assert back is buffer and back.used_length == 20
        assert not await driver.needs_reset()
        # The generator kept running: resynchronise on the words the failed session wrote.
        data_writes = [w for w in model.writes if not RING_BASE <= w[0] < RING_BASE + 0x1000]
        lost = len(data_writes) - predictor.words - Xorshift32.words_for(DATA_BASE + 0x800, 20)
        assert lost >= 0
        for _ in range(lost):
            predictor.next_word()
        assert back.data == predictor.fill(DATA_BASE + 0x800, 20)

    simulate_rng(params, body)


def test_no_interrupt_flag_and_reset_mid_work():
    """Without EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT suppresses the used event (the buffers
    are still used); a device reset while the device is busy leaves it idle with indices at
    0."""
    params = rng_params(profile="plain-v2")

    async def body(ctx, dut, driver, model):
        await driver.initialize(driver_features=VERSION_1 | INDIRECT)
        driver.set_avail_flags(AVAIL_F_NO_INTERRUPT)
        driver.post([(DATA_BASE, 32)])
        await driver.kick()
        await ctx.tick().until(~dut.rng_busy)
        assert driver.used_idx() == 1
        assert not ctx.get(dut.irq)
        assert len(driver.harvest()) == 1
        driver.set_avail_flags(0)
        # Reset while a long buffer is being written.
        driver.post([(DATA_BASE, 4096)])
        await driver.kick()
        await ctx.tick().repeat(60)
        assert ctx.get(dut.rng_busy)
        await driver.reset()
        await ctx.tick().until(~dut.rng_busy)
        writes = len(model.writes)
        await ctx.tick().repeat(50)
        assert len(model.writes) == writes
        await driver.initialize()
        buffer = driver.post([(DATA_BASE + 1, 7)])
        await driver.kick()
        (back,) = await driver.wait_used(1)
        assert back is buffer and driver.used_idx() == 1

    simulate_rng(params, body)


def test_event_idx_suppression():
    """EVENT_IDX: the device writes avail_event (its next available index, lanes 1:0 only)
    after each batch; a buffer posted while it works needs no kick; used_event holds the
    interrupt back until used.idx passes it, and avail.flags is ignored."""
    params = rng_params(profile="plain-v2")

    async def body(ctx, dut, driver, model):
        async def settle():
            """Until every available buffer is used and the device is idle."""
            while driver.used_idx() != driver.avail_idx or ctx.get(dut.rng_busy):
                await ctx.tick()
            await ctx.tick().repeat(4)

        await driver.initialize()
        assert driver.event_idx and driver.indirect
        layout = driver.layout
        sentinel = 0xA5A5
        driver.memory.write_u16(layout.avail_event + 2, sentinel)
        # Unsuppressed kick and interrupt.
        first = driver.post([(DATA_BASE, 1024)])
        assert await driver.kick()
        await ctx.tick().repeat(30)
        assert ctx.get(dut.rng_busy)
        # Posted while the device works: avail_event still says 0, so no kick is needed.
        second = driver.post([(DATA_BASE + 0x800, 32)], indirect=True)
        assert not await driver.kick()
        assert driver.kicks_suppressed == 1
        assert await driver.wait_used(2) == [first, second]
        await settle()
        assert driver.avail_event() == 2
        assert driver.memory.read_u16(layout.avail_event + 2) == sentinel
        avail_event_writes = [w for w in model.writes if w[0] == layout.avail_event & ~3]
        assert avail_event_writes and all(w[2] == 0b0011 for w in avail_event_writes)

        # used_event = last_used + 2: the next two buffers (one batch each) raise nothing,
        # the third does; avail.flags NO_INTERRUPT changes nothing.
        driver.set_avail_flags(AVAIL_F_NO_INTERRUPT)
        driver.set_used_event(driver.last_used + 2)
        for i in range(2):
            driver.post([(DATA_BASE + 64 * i, 64)])
            assert await driver.kick()
            await settle()
            assert not ctx.get(dut.irq)
        assert len(driver.harvest()) == 2
        third = driver.post([(DATA_BASE, 64)])
        assert await driver.kick()
        assert await driver.wait_used(1) == [third]
        assert model.scoreboard.suppressed == 2

        # used_event left behind (a driver polling without re-arming): it was passed before
        # the last decision, so no interrupt.
        driver.set_avail_flags(0)
        driver.set_used_event(driver.last_used - 1)
        driver.post([(DATA_BASE, 8)])
        assert await driver.kick()
        await settle()
        assert not ctx.get(dut.irq) and len(driver.harvest()) == 1
        # Re-armed: the next one interrupts again.
        assert driver.rearm() == []
        last = driver.post([(DATA_BASE, 8)])
        assert await driver.kick()
        assert await driver.wait_used(1) == [last]
        assert model.scoreboard.raised == 4 and model.scoreboard.suppressed == 3

    simulate_rng(params, body)


@pytest.mark.parametrize("event,new,old,expected", [
    (0, 1, 0, True), (1, 1, 0, False), (4, 5, 2, True), (4, 4, 2, False), (2, 5, 3, False),
    (0xFFFF, 0, 0xFFFE, True), (0xFFFF, 0xFFFF, 0xFFFE, False), (10, 12, 12, False),
])
def test_need_event(event, new, old, expected):
    assert need_event(event, new, old) is expected


def test_event_scoreboard():
    board = EventScoreboard()
    board.decision(1, 0)
    board.event()
    board.decision(2, 5)
    board.decision(6, 5)
    assert board.finish() == [] or "required" in board.errors[0]
    assert len(board.errors) == 1 and "required" in board.errors[0]
    board = EventScoreboard()
    board.decision(3, 7)
    board.event()
    board.event()
    assert "suppressed" in board.finish()[0]
    board = EventScoreboard()
    board.event()
    assert "without a decision" in board.errors[0]


# ------------------------------------------------------------------------------ cocotb

from virtio_mmio_sim.cocotb_build import (CocotbError, build, prepare_simulator,  # noqa: E402
                                          run_module)
from virtio_mmio_sim.cocotb_tests.test_rng import (BUFFERS_ENV, FEATURES_ENV,  # noqa: E402
                                                   MSI_ENV, PARAMS_ENV)


#: Build directory name -> (parameters, buffers of the traffic test, MSI, features the driver
#: accepts). The device offers VERSION_1, INDIRECT_DESC and EVENT_IDX in every configuration;
#: the drivers take all of them, INDIRECT_DESC only, or VERSION_1 only.
COCOTB_CONFIGS = {
    "rng-axil-plain-v2": (rng_params(profile="plain-v2", bus="axil"), 1800, False,
                          VERSION_1 | INDIRECT | EVENT_IDX),
    "rng-axil-seed-msi": (rng_params(profile="seed", bus="axil"), 900, True,
                          VERSION_1 | INDIRECT | EVENT_IDX),
    "rng-wishbone-pipelined-plain-v2": (
        rng_params(profile="plain-v2", bus="wishbone", wishbone_mode="pipelined"), 900, False,
        VERSION_1 | INDIRECT),
    "rng-wishbone-classic-seed-intx": (
        rng_params(profile="seed", bus="wishbone", wishbone_mode="classic", queue_size=16),
        500, False, VERSION_1),
}


@pytest.fixture(scope="session")
def verilator_ready():
    prepare_simulator("verilator", BUILD / "tools")


@pytest.mark.cocotb
@pytest.mark.parametrize("name", list(COCOTB_CONFIGS))
def test_cocotb_rng(name, verilator_ready):
    params, buffers, msi, features = COCOTB_CONFIGS[name]
    build_dir = BUILD / "cocotb" / name
    runner = build(params, build_dir, device="rng")
    try:
        run_module(runner, "virtio_mmio_sim.cocotb_tests.test_rng", params.name, build_dir,
                   build_dir / "rng", label=name, min_tests=4,
                   env={PARAMS_ENV: json.dumps(params.as_dict()), BUFFERS_ENV: str(buffers),
                        MSI_ENV: "1" if msi else "0", FEATURES_ENV: hex(features)})
    except CocotbError as error:
        pytest.fail(str(error))
