"""Notifications (docs/spec.md §6): doorbell layouts, notification data, the lossless stream."""

import random

import pytest

from virtio_mmio.transport.notify import NotifyQueue
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import MAGIC_VALUE, Feature, RegisterMap
from virtio_mmio_sim.amaranth_harness import simulate


V1 = 1 << Feature.VERSION_1
SEED = RegisterMap("seed")

#: (name, parameters): every layout the decoder handles.
LAYOUTS = [
    ("queue-notify-only", dict(profile="plain-v2", queues=5)),
    ("multiplier-4", dict(queues=5)),
    ("multiplier-8-base-0x400", dict(queues=5, notify_base=0x400, notify_multiplier=8)),
    ("multiplier-12", dict(queues=7, notify_multiplier=12)),
    ("multiplier-20-fifo-4", dict(queues=5, notify_multiplier=20, notify_fifo_depth=4)),
    ("multiplier-0", dict(queues=5, notify_multiplier=0)),
    ("near-limit-0x7fc", dict(queues=3, notify_base=0xF000, notify_multiplier=0x7FC)),
    ("multiplier-0x1000-top", dict(queues=16, notify_base=0xFFFC, notify_multiplier=0x1000)),
]


def sink(received, ready=lambda: True):
    def factory(dut):
        async def process(ctx):
            notify = dut.device.notify
            async for _, _, valid, rdy, queue, data, has_data in ctx.tick().sample(
                    notify.valid, notify.ready, notify.payload.queue, notify.payload.data,
                    notify.payload.has_data):
                if valid and rdy:
                    received.append((queue, data, has_data))
                ctx.set(dut.device.notify.ready, ready())
        return process
    return factory


def doorbells(params):
    """Byte offset -> queue for every per-queue doorbell (empty where the queue comes from the
    data word)."""
    if not params.has_doorbells or params.notify_multiplier == 0:
        return {}
    return {params.notify_base + q * params.notify_multiplier: q for q in range(params.queues)}


@pytest.mark.parametrize("name,kwargs", LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_layout(name, kwargs):
    params = EndpointParams(**kwargs)
    n = params.queues
    received = []
    expected = []
    bells = doorbells(params)

    async def body(ctx, dut, bus, drv):
        info = await drv.probe()
        if params.has_doorbells:
            assert info.notify_layout == (params.notify_base, params.notify_multiplier)
        else:
            assert info.notify_layout is None
        # Every queue through the driver's own choice (doorbell when the layout says so).
        for q in list(range(n)) + list(reversed(range(n))):
            await drv.notify(q)
            expected.append((q, q, 0))
        # QueueNotify works in every profile.
        await bus.write(SEED.offset("QueueNotify"), n - 1)
        expected.append((n - 1, n - 1, 0))
        # At a per-queue doorbell the queue is the address's; the word is passed on as written.
        for offset, q in bells.items():
            await bus.write(offset, 0xABCD_0000 | q)
            expected.append((q, 0xABCD_0000 | q, 0))
        dropped = 0
        # Dropped and counted: queues >= N from the data word, partial writes.
        await bus.write(SEED.offset("QueueNotify"), n)
        await bus.write(drv.doorbell(0), 0, size=2)
        dropped += 2
        if params.has_doorbells and params.notify_multiplier == 0:
            await bus.write(params.notify_base, n + 7)
            dropped += 1
        for offset in list(bells)[:2]:
            await bus.write(offset, 1, size=1)
            dropped += 1
        # Not doorbells: between two doorbells, past the last, below the first. Reserved.
        if bells:
            last = max(bells)
            holes = [last + 4, params.notify_base - 4]
            if params.notify_multiplier > 4:
                holes += [params.notify_base + 4, last - 4]
            for offset in holes:
                if offset >= params.config_end and offset < 1 << params.addr_width:
                    await bus.write(offset, 0)
                    assert await bus.read(offset) == 0
        for offset in bells:
            assert await bus.read(offset) == 0        # doorbells read 0
        await ctx.tick().repeat(4)
        assert ctx.get(dut.device.notify_dropped) == dropped

    simulate(params, body, processes=[sink(received)])
    assert received == expected


@pytest.mark.parametrize("depth", [1, 3])
def test_back_pressure_scoreboard(depth):
    """Doorbell writes in random order while the device holds notify_ready low for long random
    stretches: nothing lost, nothing duplicated, order kept; reads of other registers complete
    while notifications wait."""
    rng = random.Random(depth)
    params = EndpointParams(queues=6, notify_multiplier=12, notify_fifo_depth=depth)
    received, sent = [], []
    holding = [False]

    def ready():
        if rng.random() < 0.05:
            holding[0] = not holding[0]
        return not holding[0] and rng.random() < 0.7

    async def body(ctx, dut, bus, drv):
        await drv.probe()
        reads_while_blocked = 0
        for _ in range(150):
            q = rng.randrange(6)
            await drv.notify(q)
            sent.append(q)
            if ctx.get(dut.device.notify.valid) and not ctx.get(dut.device.notify.ready):
                assert await bus.read(SEED.offset("MagicValue")) == MAGIC_VALUE
                reads_while_blocked += 1
        while len(received) < len(sent):
            await ctx.tick()
        assert reads_while_blocked > 10

    simulate(params, body, processes=[sink(received, ready)],
             pause=lambda: rng.random() < 0.3)
    assert [q for q, _, _ in received] == sent


def test_notify_back_pressure_keeps_reads_going():
    """While the device holds notify_ready low, a second notify write waits on the bus and
    reads on the other channel still complete; then both arrive, in order."""
    received = []
    hold = [True]
    async def body(ctx, dut, bus, drv):
        await drv.notify(1)                     # taken into the stream register
        ctx.set(dut.bus.awaddr, SEED.offset("QueueNotify"))
        ctx.set(dut.bus.awvalid, 1)
        ctx.set(dut.bus.wdata, 2)
        ctx.set(dut.bus.wstrb, 0xF)
        ctx.set(dut.bus.wvalid, 1)
        await ctx.tick()                        # AW and W taken into the front-end's buffers
        ctx.set(dut.bus.awvalid, 0)
        ctx.set(dut.bus.wvalid, 0)
        await ctx.tick().repeat(20)
        assert not ctx.get(dut.bus.bvalid)   # the second notify is still waiting
        assert await bus.read(SEED.offset("MagicValue")) == MAGIC_VALUE
        assert await bus.read(SEED.offset("Status")) == 0
        assert received == []
        hold[0] = False
        await ctx.tick().until(dut.bus.bvalid)
        ctx.set(dut.bus.bready, 1)
        await ctx.tick()
        ctx.set(dut.bus.bready, 0)
        await ctx.tick().repeat(3)
    simulate(EndpointParams(queues=4), body, processes=[sink(received, lambda: not hold[0])])
    assert received == [(1, 1, 0), (2, 2, 0)]


def test_notification_data():
    params = EndpointParams(queues=4, notify_multiplier=8,
                            features=V1 | 1 << Feature.NOTIFICATION_DATA)
    received = []

    async def body(ctx, dut, bus, drv):
        await drv.initialize(driver_features=V1 | 1 << Feature.NOTIFICATION_DATA)
        word = 1 << 31 | 0x0123 << 16 | 2
        await drv.notify(2, data=word)                        # doorbell: queue from address
        await bus.write(SEED.offset("QueueNotify"), 1 << 16 | 3)   # QueueNotify: vqn
        await bus.write(SEED.offset("QueueNotify"), 1 << 16 | 4)   # vqn 4 >= N: dropped
        await drv.reset()
        await drv.initialize(driver_features=V1)              # not negotiated this time
        await bus.write(SEED.offset("QueueNotify"), 1 << 16 | 3)   # whole word >= N: dropped
        await drv.notify(1)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.device.notify_dropped) == 2

    simulate(params, body, processes=[sink(received)])
    assert received == [(2, 1 << 31 | 0x0123 << 16 | 2, 1), (3, 1 << 16 | 3, 1), (1, 1, 0)]


@pytest.mark.parametrize("depth", [1, 4])
def test_device_reset_discards_notifications_not_taken(depth):
    params = EndpointParams(queues=4, notify_fifo_depth=depth)
    received = []
    hold = [True]

    async def body(ctx, dut, bus, drv):
        await drv.probe()
        for q in range(depth):
            await drv.notify(q)
        assert ctx.get(dut.device.notify.valid)
        await drv.reset()
        assert not ctx.get(dut.device.notify.valid)
        hold[0] = False
        await drv.notify(3)
        await ctx.tick().repeat(3)

    simulate(params, body, processes=[sink(received, lambda: not hold[0])])
    assert received == [(3, 3, 0)]


def test_notify_latency_is_one_clock():
    """From the cycle the write is taken (the later of the AW and W handshakes) to
    notify_valid: one clock."""
    params = EndpointParams(queues=2)
    async def body(ctx, dut, bus, drv):
        ctx.set(dut.bus.awaddr, params.notify_base + 4)
        ctx.set(dut.bus.wdata, 1)
        ctx.set(dut.bus.wstrb, 0xF)
        ctx.set(dut.bus.awvalid, 1)
        ctx.set(dut.bus.wvalid, 1)
        await ctx.tick()
        ctx.set(dut.bus.awvalid, 0)
        ctx.set(dut.bus.wvalid, 0)
        assert ctx.get(dut.device.notify.valid) and ctx.get(dut.device.notify.payload.queue) == 1
    simulate(params, body)


def test_notify_queue_rejects_bad_depth():
    with pytest.raises(ValueError, match="Notify FIFO depth must be a positive integer"):
        NotifyQueue(0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(notify_fifo_depth=0), r"notify_fifo_depth must be an integer in 1\.\.4096"),
    (dict(config_size=0x200, notify_base=0x200), r"notify_base must not overlap"),
    (dict(notify_multiplier=2), r"notify_multiplier must be 0 or a multiple of 4"),
])
def test_notify_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EndpointParams(**kwargs)


def test_window_holds_the_last_doorbell():
    params = EndpointParams(queues=16, notify_base=0xFFFC, notify_multiplier=0x1000)
    assert params.doorbell_end == 0xFFFC + 15 * 0x1000 + 4
    assert 1 << params.addr_width >= params.doorbell_end
    with pytest.raises(ValueError, match="addr_width"):
        EndpointParams(queues=16, notify_base=0xFFFC, notify_multiplier=0x1000, addr_width=16)
