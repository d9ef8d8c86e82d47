"""Bus front-ends (docs/spec.md §8, §12): handshakes under random timing, concurrency,
back-pressure."""

import random

import pytest

from amaranth.sim import Simulator

from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.bus import SkidBuffer
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import MAGIC_VALUE, RegisterMap
from virtio_mmio_sim.amaranth_bus import AmaranthAxiLite
from virtio_mmio_sim.amaranth_harness import simulate


SEED = RegisterMap("seed")


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
@pytest.mark.parametrize("bus,mode", [("axil", "classic"), ("wishbone", "classic"),
                                      ("wishbone", "pipelined")])
@pytest.mark.parametrize("pause", [0.0, 0.5])
def test_driver_bring_up_on_every_bus(bus, mode, pause, pipeline):
    rng = random.Random(11)
    async def body(ctx, dut, bus_, drv):
        await drv.initialize(queues=[dict(index=q, size=8, desc=0x100 * q, driver=0x200 * q,
                                          device=0x300 * q) for q in range(3)])
        assert ctx.get(dut.device.driver_ok)
        for q in range(3):
            ctx.set(dut.device.queue.sel, q)
            await ctx.tick()
            port = dut.device.queue
            assert (ctx.get(port.ready), ctx.get(port.num), ctx.get(port.desc)) == \
                (1, 8, 0x100 * q)
        assert await drv.read_config(0, 4) == 0      # no device model: cfg_rdata is 0
    simulate(EndpointParams(bus=bus, wishbone_mode=mode, queues=3, pipeline=pipeline),
             body, pause=lambda: rng.random() < pause)


def test_skid_buffer_keeps_order_under_random_timing():
    rng = random.Random(5)
    dut = SkidBuffer(8)
    sent, got = list(range(200)), []

    async def producer(ctx):
        for value in sent:
            ctx.set(dut.i.payload, value)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            while rng.random() < 0.3:
                await ctx.tick()

    async def consumer(ctx):
        while len(got) < len(sent):
            ctx.set(dut.o.ready, rng.random() < 0.6)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append(payload)
            assert ctx.get(dut.level) <= 2

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == sent


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
def test_axi_concurrent_random_traffic_scoreboard(pipeline):
    """A manager that drives all five channels independently with random valid/ready timing:
    every read returns the value of its address, in order, while writes (selector and
    notifications) complete concurrently; every write gets exactly one B; every notification
    arrives once, in order, under random notify back-pressure."""
    rng = random.Random(2024)
    params = EndpointParams(queues=4, device_id=0x22, vendor_id=0x33, pipeline=pipeline)
    dut = VirtioMmioEndpoint(params)
    expected_of = {SEED.offset("MagicValue"): MAGIC_VALUE, SEED.offset("Version"): 3,
                   SEED.offset("DeviceID"): 0x22, SEED.offset("VendorID"): 0x33,
                   SEED.offset("QueueNumMax"): 256, SEED.offset("Status"): 0}
    reads = [rng.choice(sorted(expected_of)) for _ in range(300)]
    writes = []
    for _ in range(150):
        if rng.random() < 0.5:
            writes.append((SEED.offset("QueueNotify"), rng.randrange(4)))
        else:
            writes.append((SEED.offset("DeviceFeaturesSel"), rng.randrange(2)))
    notifications = [value for offset, value in writes if offset == SEED.offset("QueueNotify")]
    got_reads, got_notify, b_count = [], [], [0]
    done = {"ar": False, "aw": False, "w": False}

    def channel(name, items, fields):
        async def process(ctx):
            for item in items:
                while rng.random() < 0.4:
                    ctx.set(getattr(dut.bus, f"{name}valid"), 0)
                    await ctx.tick()
                for field, value in zip(fields, item):
                    ctx.set(getattr(dut.bus, field), value)
                ctx.set(getattr(dut.bus, f"{name}valid"), 1)
                await ctx.tick().until(getattr(dut.bus, f"{name}ready"))
            ctx.set(getattr(dut.bus, f"{name}valid"), 0)
            done[name] = True
        return process

    async def responses(ctx):
        while len(got_reads) < len(reads) or b_count[0] < len(writes) or \
                len(got_notify) < len(notifications):
            ctx.set(dut.bus.rready, rng.random() < 0.5)
            ctx.set(dut.bus.bready, rng.random() < 0.5)
            ctx.set(dut.device.notify.ready, rng.random() < 0.3)
            _, _, rv, rr, rdata, bv, br, bresp, rresp, nv, nr, nq = await ctx.tick().sample(
                dut.bus.rvalid, dut.bus.rready, dut.bus.rdata, dut.bus.bvalid,
                dut.bus.bready, dut.bus.bresp, dut.bus.rresp, dut.device.notify.valid,
                dut.device.notify.ready, dut.device.notify.payload.queue)
            if rv and rr:
                assert rresp == 0
                got_reads.append(rdata)
            if bv and br:
                assert bresp == 0
                b_count[0] += 1
            if nv and nr:
                got_notify.append(nq)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(channel("ar", [(a,) for a in reads], ("araddr",)))
    sim.add_testbench(channel("aw", [(a,) for a, _ in writes], ("awaddr",)))
    sim.add_testbench(channel("w", [(v, 0xF) for _, v in writes], ("wdata", "wstrb")))
    sim.add_testbench(responses)
    sim.run_until(1e-8 * 20_000)
    assert all(done.values())
    assert got_reads == [expected_of[a] for a in reads]
    assert b_count[0] == len(writes)
    assert got_notify == notifications


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
def test_axi_read_waits_for_r_back_pressure_without_loss(pipeline):
    """RREADY held low for a long time: ARREADY drops once two reads (pipelined: three) are
    outstanding, and every accepted read is answered once RREADY rises."""
    params = EndpointParams(pipeline=pipeline)
    held = 3 if pipeline else 2
    dut = VirtioMmioEndpoint(params)
    order = [SEED.offset(n) for n in ("MagicValue", "Version", "VendorID", "DeviceID")] * 3

    async def testbench(ctx):
        accepted = 0
        ctx.set(dut.bus.arvalid, 1)
        for cycle in range(30):
            ctx.set(dut.bus.araddr, order[min(accepted, len(order) - 1)])
            _, _, arr = await ctx.tick().sample(dut.bus.arready)
            if arr:
                accepted += 1
        assert accepted == held       # every one held in R's buffer
        ctx.set(dut.bus.arvalid, 0)
        ctx.set(dut.bus.rready, 1)
        values = []
        for cycle in range(8):
            _, _, rv, rdata = await ctx.tick().sample(dut.bus.rvalid, dut.bus.rdata)
            if rv:
                values.append(rdata)
        assert values == [MAGIC_VALUE, 3, 0x1AF4][:held]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
def test_wishbone_pipelined_back_to_back(pipeline):
    params = EndpointParams(bus="wishbone", wishbone_mode="pipelined", device_id=9,
                            pipeline=pipeline)
    dut = VirtioMmioEndpoint(params)
    order = [SEED.offset(n) >> 2 for n in ("MagicValue", "DeviceID", "Version")] * 4

    async def testbench(ctx):
        ctx.set(dut.bus.cyc, 1)
        ctx.set(dut.bus.stb, 1)
        ctx.set(dut.bus.sel, 0xF)
        values = []
        for index in range(len(order) + 1 + pipeline):
            if index < len(order):
                ctx.set(dut.bus.adr, order[index])
            else:
                ctx.set(dut.bus.stb, 0)
            _, _, stall, ack, data = await ctx.tick().sample(
                dut.bus.stall, dut.bus.ack, dut.bus.dat_r)
            assert not stall
            if ack:
                values.append(data)
        assert values == [MAGIC_VALUE, 9, 3] * 4
        assert not ctx.get(dut.bus.err)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def _run_beside(dut, monitor, testbench, cycles=200):
    """Run ``testbench`` beside the ``monitor`` process for ``cycles`` clocks; fail unless
    the testbench got to its end."""
    finished = []

    async def to_the_end(ctx):
        await testbench(ctx)
        finished.append(True)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(monitor)
    sim.add_testbench(to_the_end)
    sim.run_until(1e-8 * cycles)
    assert finished, "the testbench did not finish"


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
def test_axi_write_answered_only_once_applied(pipeline):
    """A register write queued behind a notification that cannot leave (notify stream full)
    gets no B, and a read meanwhile sees the old value; once the stream drains, every write
    is answered, in order, and a read issued after the last B sees the register written."""
    params = EndpointParams(queues=2, notify_fifo_depth=1, pipeline=pipeline)
    dut = VirtioMmioEndpoint(params)
    notify, ready = SEED.offset("QueueNotify"), SEED.offset("QueueReady")

    async def write(ctx, address, value):
        ctx.set(dut.bus.awaddr, address)
        ctx.set(dut.bus.wdata, value)
        ctx.set(dut.bus.wstrb, 0xF)
        ctx.set(dut.bus.awvalid, 1)
        ctx.set(dut.bus.wvalid, 1)
        await ctx.tick().until(dut.bus.awready & dut.bus.wready)
        ctx.set(dut.bus.awvalid, 0)
        ctx.set(dut.bus.wvalid, 0)

    answers = [0]

    async def b_monitor(ctx):
        ctx.set(dut.bus.bready, 1)
        async for _, _, bvalid in ctx.tick().sample(dut.bus.bvalid):
            answers[0] += bvalid

    async def testbench(ctx):
        for address, value in ((notify, 0), (notify, 1), (ready, 1)):
            await write(ctx, address, value)
        await ctx.tick().repeat(10)
        assert answers[0] == 1        # the first notification only: it is in the FIFO
        assert await AmaranthAxiLite(ctx, dut).read_word(ready) == 0
        ctx.set(dut.device.notify.ready, 1)
        await ctx.tick().repeat(10)
        assert answers[0] == 3
        assert await AmaranthAxiLite(ctx, dut).read_word(ready) == 1

    _run_beside(dut, b_monitor, testbench)


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
def test_wishbone_write_answered_only_once_applied(pipeline):
    """Pipelined Wishbone: behind a notification that cannot leave, the next notify write is
    not answered and the register write after it stalls; once the stream drains every write
    is acknowledged, in order, and a read after the last ack sees the register written."""
    params = EndpointParams(bus="wishbone", wishbone_mode="pipelined", queues=2,
                            notify_fifo_depth=1, pipeline=pipeline)
    dut = VirtioMmioEndpoint(params)
    notify, ready = SEED.offset("QueueNotify") >> 2, SEED.offset("QueueReady") >> 2
    acks = [0]

    async def ack_monitor(ctx):
        async for _, _, ack in ctx.tick().sample(dut.bus.ack):
            acks[0] += ack

    async def present(ctx, adr, value=0, *, we, patience=None):
        """Present a request until it is taken (no stall); with ``patience``, give up after
        that many stalled cycles (the request stays presented). Returns whether taken."""
        ctx.set(dut.bus.adr, adr)
        ctx.set(dut.bus.we, we)
        ctx.set(dut.bus.dat_w, value)
        ctx.set(dut.bus.stb, 1)
        waited = 0
        while True:
            _, _, stall = await ctx.tick().sample(dut.bus.stall)
            if not stall:
                ctx.set(dut.bus.stb, 0)
                return True
            waited += 1
            if patience is not None and waited >= patience:
                return False

    async def testbench(ctx):
        ctx.set(dut.bus.cyc, 1)
        ctx.set(dut.bus.sel, 0xF)
        writes = [(notify, 0), (notify, 1), (ready, 1)]
        taken = 0
        while taken < len(writes) and await present(ctx, *writes[taken], we=1, patience=10):
            taken += 1
        # The stage takes the second notification and stalls the register write; without
        # it, the second notification stalls.
        assert taken == (2 if pipeline else 1)
        assert acks[0] == 1           # the first notification only: it is in the FIFO
        ctx.set(dut.device.notify.ready, 1)
        for address, value in writes[taken:]:
            await present(ctx, address, we=1, value=value)
        await ctx.tick().repeat(4)
        assert acks[0] == 3
        await present(ctx, ready, we=0)
        data, = await ctx.tick().sample(dut.bus.dat_r).until(dut.bus.ack)
        assert data == 1

    _run_beside(dut, ack_monitor, testbench)
