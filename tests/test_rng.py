"""The virtio-rng example device (rtl/rng.py).

* Construction and validation, and ``generate --device rng``.
* Amaranth's simulator: the rng endpoint, the driver model (sim/rng_driver.py) on its
  AXI4-Lite or Wishbone subordinate port and a Python memory model on its DMA port (zero wait
  or random stalls); a few hundred buffers, malformed rings, and the clocks per buffer.
* cocotb (marker ``cocotb``): ``virtio_mmio_sim.cocotb_tests.test_rng`` on the generated
  Verilog with Verilator, cocotbext-axi's AxiLiteRam (or a Wishbone RAM model) as guest
  memory; builds cached under ``build/cocotb/rng-<config>/``.
"""

import json
import os
import random
import struct
from pathlib import Path

import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from virtio_mmio.cli import main as cli_main
from virtio_mmio.generate import generate_verilog
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import Feature, Status
from virtio_mmio.rng import (DEFAULT_SEED, VirtioRngDevice, VirtioRngEndpoint, check_rng_params,
                             rng_params, rng_port_members)
from virtio_mmio_sim.amaranth_bus import AmaranthAxiLite, AmaranthWishbone
from virtio_mmio_sim.driver import VirtioMmioDriver
from virtio_mmio_sim.rng_driver import (GuestMemory, RingLayout, UnmappedAccess,
                                        VirtioRngDriver, Xorshift32, DESC_F_INDIRECT,
                                        DESC_F_NEXT, DESC_F_WRITE, AVAIL_F_NO_INTERRUPT)


ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


# ------------------------------------------------------------------------------ construction

def test_rng_params_defaults():
    p = rng_params()
    assert (p.device_id, p.queues, p.queue_sizes, p.config_size, p.features) == \
        (4, 1, (8,), 0, 1 << Feature.VERSION_1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(queues=2), r"^queues must be 1 for the rng device"),
    (dict(device_id=1), r"^device_id must be 4"),
    (dict(queue_size=12), r"^queue_size must be a power of two"),
    (dict(config_size=4), r"^config_size must be 0"),
    (dict(features=(1 << Feature.VERSION_1) | (1 << Feature.RING_INDIRECT_DESC)),
     r"^features must be a subset of"),
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
                 "rng_busy", "rng_broken", "rng_buffers"):
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


def _memory():
    memory = GuestMemory(size=0x2_0000)
    memory.add_window(RING_BASE, 0x1000)
    memory.add_window(DATA_BASE, DATA_SIZE)
    return memory


class AxiLiteMemoryModel:
    """A Python AXI4-Lite subordinate on ``m_dma_axil_*`` serving :class:`GuestMemory`: one
    access at a time, answered in the cycle after the handshake (zero wait), or with random
    readiness and answer delays when ``stall`` > 0. Unmapped addresses answer SLVERR.
    ``writes`` records ``(address, data, strobe)``; ``log`` every access in order."""

    def __init__(self, dut, memory, *, stall=0.0, seed=0):
        self.dut, self.memory, self.stall = dut, memory, stall
        self.rng = random.Random(seed)
        self.writes = []
        self.log = []

    def _pause(self):
        return self.stall and self.rng.random() < self.stall

    async def process(self, ctx):
        d = self.dut
        read_answer = write_answer = None
        write_address = write_data = None
        while True:
            ctx.set(d.m_dma_axil_arready, read_answer is None and not self._pause())
            ctx.set(d.m_dma_axil_awready, write_address is None and not self._pause())
            ctx.set(d.m_dma_axil_wready, write_data is None and not self._pause())
            r_out = read_answer is not None and not self._pause()
            b_out = write_answer is not None and not self._pause()
            ctx.set(d.m_dma_axil_rvalid, r_out)
            ctx.set(d.m_dma_axil_bvalid, b_out)
            if r_out:
                ctx.set(d.m_dma_axil_rdata, read_answer[0])
                ctx.set(d.m_dma_axil_rresp, read_answer[1])
            if b_out:
                ctx.set(d.m_dma_axil_bresp, write_answer)
            _, _, arv, arr, ara, awv, awr, awa, wv, wr, wd, ws, rr, br = await ctx.tick().sample(
                d.m_dma_axil_arvalid, d.m_dma_axil_arready, d.m_dma_axil_araddr,
                d.m_dma_axil_awvalid, d.m_dma_axil_awready, d.m_dma_axil_awaddr,
                d.m_dma_axil_wvalid, d.m_dma_axil_wready, d.m_dma_axil_wdata,
                d.m_dma_axil_wstrb, d.m_dma_axil_rready, d.m_dma_axil_bready)
            if r_out and rr:
                read_answer = None
            if b_out and br:
                write_answer = None
            if arv and arr:
                try:
                    read_answer = (self.memory.read_u32(ara), 0)
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
        self.pipelined = hasattr(dut, "m_dma_wb_stall")
        self.writes = []

    async def process(self, ctx):
        d = self.dut
        answer = None
        wait = 0
        taken = False
        while True:
            stall = bool(self.stall and self.rng.random() < self.stall)
            if self.pipelined:
                ctx.set(d.m_dma_wb_stall, stall or taken)
            out = answer is not None and wait == 0
            ctx.set(d.m_dma_wb_ack, out and answer[1] == 0)
            ctx.set(d.m_dma_wb_err, out and answer[1] != 0)
            ctx.set(d.m_dma_wb_dat_r, answer[0] if out else 0)
            _, _, cyc, stb, we, adr, dat, sel = await ctx.tick().sample(
                d.m_dma_wb_cyc, d.m_dma_wb_stb, d.m_dma_wb_we, d.m_dma_wb_adr, d.m_dma_wb_dat_w,
                d.m_dma_wb_sel)
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
                return self.memory.read_u32(address), 0
            self.writes.append((address, data, sel))
            raw = data.to_bytes(4, "little")
            for lane in range(4):
                if sel >> lane & 1:
                    self.memory.write(address + lane, raw[lane:lane + 1])
            return 0, 0
        except UnmappedAccess:
            return 0, 1


def simulate_rng(params, body, *, stall=0.0, seed=1, timeout_cycles=400_000):
    """Run ``body(ctx, dut, driver, model)`` against the rng endpoint of ``params`` with a
    memory model on its DMA port; ``driver`` is a :class:`VirtioRngDriver` waiting on the
    ``irq`` pin."""
    dut = VirtioRngEndpoint(params)
    memory = _memory()
    if params.bus == "axil":
        model = AxiLiteMemoryModel(dut, memory, stall=stall, seed=seed)
    else:
        model = WishboneMemoryModel(dut, memory, stall=stall, seed=seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(model.process)
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

        layout = RingLayout.packed(params.queue_sizes[0], RING_BASE + 0x100)
        driver = VirtioRngDriver(VirtioMmioDriver(bus, params.profile), memory, layout,
                                 wait_interrupt=wait_irq)
        await body(ctx, dut, driver, model)
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
    return dut


def _random_segments(rng, allocator, max_segments=3):
    count = rng.choice((1, 1, 1, 2, max_segments))
    return [(allocator(length), length)
            for length in (rng.randint(1, 256) for _ in range(count))]


def _allocator(rng, slot_size=512):
    """Buffer addresses at a random byte inside 512-byte slots taken in turn, so the buffers
    in flight never overlap."""
    slots = DATA_SIZE // slot_size
    counter = iter(range(1 << 62))

    def allocate(length):
        slot = next(counter) % slots
        return DATA_BASE + slot * slot_size + rng.randrange(0, slot_size - length + 1)
    return allocate


@pytest.mark.parametrize("bus,mode,stall", [
    ("axil", "classic", 0.0), ("axil", "classic", 0.4),
    ("wishbone", "classic", 0.3), ("wishbone", "pipelined", 0.3),
])
def test_simulated_traffic(bus, mode, stall):
    """300 buffers of random lengths and chains; every one comes back once with its length
    and the predicted bytes; the interrupt never comes before the used index."""
    params = rng_params(profile="plain-v2", bus=bus, wishbone_mode=mode)
    rng = random.Random(7)
    predictor = Xorshift32(DEFAULT_SEED)

    async def body(ctx, dut, driver, model):
        await driver.initialize()
        posted = []
        returned = []
        allocate = _allocator(rng)
        while len(returned) < 300:
            while len(posted) - len(returned) < 6 and len(posted) < 300:
                segments = _random_segments(rng, allocate)
                if not driver.can_post(len(segments)):
                    break
                posted.append(driver.post(segments))
            await driver.kick()
            for buffer in await driver.wait_used(1):
                expected = b"".join(predictor.fill(a, n) for a, n in buffer.segments)
                assert buffer.data == expected
                returned.append(buffer)
        assert [b.head for b in returned] == [b.head for b in posted]
        assert not await driver.needs_reset()
        assert ctx.get(dut.rng_buffers) == 300

    simulate_rng(params, body, stall=stall)


def test_clocks_per_buffer():
    """The latency figures of the docstring: kick → irq for one 64-byte buffer and a batch
    of eight, zero-wait memory."""
    params = rng_params(profile="plain-v2")
    figures = {}

    async def body(ctx, dut, driver, model):
        await driver.initialize()
        for count in (1, 8):
            for i in range(count):
                driver.post([(DATA_BASE + 0x100 * i, 64)])
            await driver.kick()
            start = None
            cycles = 0
            while not ctx.get(dut.irq):
                if start is None and ctx.get(dut.rng_busy):
                    start = cycles
                await ctx.tick()
                cycles += 1
            figures[count] = cycles - start
            await driver.wait_used(count)
        assert await driver.transport.read("InterruptStatus") == 0

    simulate_rng(params, body)
    print(f"kick -> irq, 64-byte buffers: {figures}")
    # busy rises the cycle after the kick is taken; irq one cycle after used_valid.
    assert figures[1] <= 56, figures
    assert figures[8] <= 56 + 7 * 48, figures


@pytest.mark.parametrize("case", ["head-out-of-range", "next-out-of-range", "loop",
                                  "zero-length", "read-only", "indirect", "dma-error",
                                  "avail-too-far", "misaligned-used"])
def test_malformed_ring(case):
    params = rng_params(profile="plain-v2")
    predictor = Xorshift32(DEFAULT_SEED)

    async def body(ctx, dut, driver, model):
        await driver.initialize()
        layout = driver.layout
        good = driver.post([(DATA_BASE, 16)])
        await driver.kick()
        (back,) = await driver.wait_used(1)
        assert back.data == predictor.fill(DATA_BASE, 16)
        used_before = driver.used_idx()

        if case == "head-out-of-range":
            driver.publish(layout.size)
        elif case == "next-out-of-range":
            driver.write_descriptor(0, DATA_BASE, 8, DESC_F_WRITE | DESC_F_NEXT, layout.size + 3)
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
        elif case == "indirect":
            driver.write_descriptor(0, DATA_BASE, 16, DESC_F_WRITE | DESC_F_INDIRECT)
            driver.publish(0)
        elif case == "dma-error":
            driver.write_descriptor(0, 0xDEAD_0000_0000_0000, 8, DESC_F_WRITE)
            driver.publish(0)
        elif case == "avail-too-far":
            driver.avail_idx = (driver.avail_idx + layout.size + 1) & 0xFFFF
            driver.memory.write_u16(layout.avail + 2, driver.avail_idx)
        await driver.kick() if case != "misaligned-used" else None
        if case == "misaligned-used":
            # A used ring off its 4-byte alignment is refused at the first kick.
            await driver.reset()
            bad = RingLayout(layout.size, layout.desc, layout.avail, layout.used + 2)
            driver.layout = bad
            await driver.initialize()
            driver.post([(DATA_BASE, 16)])
            await driver.kick()
        await ctx.tick().repeat(400)
        status = await driver.status()
        assert status & Status.DEVICE_NEEDS_RESET, f"{status:#x}"
        assert ctx.get(dut.rng_broken)
        # INTx: a configuration-change interrupt came with it.
        assert await driver.transport.read("InterruptStatus") & 2
        # Stopped: a further kick does nothing.
        used_now = driver.memory.read_u16(driver.layout.used + 2)
        await driver.kick()
        await ctx.tick().repeat(200)
        assert driver.memory.read_u16(driver.layout.used + 2) == used_now
        assert not ctx.get(dut.rng_busy)
        if case != "misaligned-used":
            assert used_now == used_before

        # Reset and a fresh start work again.
        driver.layout = layout
        await driver.reset()
        assert not ctx.get(dut.rng_broken)
        await driver.initialize()
        buffer = driver.post([(DATA_BASE + 0x800, 20)])
        await driver.kick()
        (back,) = await driver.wait_used(1)
        assert back is buffer
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
    """VRING_AVAIL_F_NO_INTERRUPT suppresses the used event (the buffers are still used); a
    device reset while the device is busy leaves it idle with indices at 0."""
    params = rng_params(profile="plain-v2")

    async def body(ctx, dut, driver, model):
        await driver.initialize()
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


# ------------------------------------------------------------------------------ cocotb

from virtio_mmio_sim.cocotb_build import build, failures, prepare_simulator  # noqa: E402
from virtio_mmio_sim.cocotb_tests.test_rng import (BUFFERS_ENV, MSI_ENV,  # noqa: E402
                                                   PARAMS_ENV)


#: Build directory name -> (parameters, buffers of the traffic test, MSI).
COCOTB_CONFIGS = {
    "rng-axil-plain-v2": (rng_params(profile="plain-v2", bus="axil"), 2000, False),
    "rng-axil-seed-msi": (rng_params(profile="seed", bus="axil"), 1000, True),
    "rng-wishbone-pipelined-plain-v2": (
        rng_params(profile="plain-v2", bus="wishbone", wishbone_mode="pipelined"), 1000, False),
    "rng-wishbone-classic-seed-intx": (
        rng_params(profile="seed", bus="wishbone", wishbone_mode="classic", queue_size=16),
        500, False),
}


@pytest.fixture(scope="session")
def verilator_ready():
    prepare_simulator("verilator", BUILD / "tools")


@pytest.mark.cocotb
@pytest.mark.parametrize("name", list(COCOTB_CONFIGS))
def test_cocotb_rng(name, verilator_ready):
    from cocotb_tools.check_results import get_results

    params, buffers, msi = COCOTB_CONFIGS[name]
    build_dir = BUILD / "cocotb" / name
    runner = build(params, build_dir, device="rng")
    test_dir = build_dir / "rng"
    results = test_dir / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(test_module="virtio_mmio_sim.cocotb_tests.test_rng",
                    hdl_toplevel=params.name, hdl_toplevel_lang="verilog", build_dir=build_dir,
                    test_dir=test_dir, results_xml=str(results),
                    extra_env={PARAMS_ENV: json.dumps(params.as_dict()),
                               BUFFERS_ENV: str(buffers), MSI_ENV: "1" if msi else "0"})
    except SystemExit as stop:
        if not results.exists():
            pytest.fail(f"{name}: the simulation ended without results (exit {stop.code})")
    tests, failed = get_results(results)
    assert failed == 0, f"{name}: {failed} of {tests} cocotb tests failed:\n" + \
        "\n".join(failures(results))
    assert tests >= 4, f"{name}: only {tests} cocotb tests ran"
