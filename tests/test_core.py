"""Rules of docs/spec.md §4–5 in Amaranth's simulator, through the AXI4-Lite port and the driver
model."""

import random

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import CONFIG_BASE, MAGIC_VALUE, Feature, RegisterMap, Status
from virtio_mmio_sim.amaranth_harness import simulate
from virtio_mmio_sim.driver import DriverError, VirtioMmioDriver


V1 = 1 << Feature.VERSION_1
SEED = RegisterMap("seed")


def off(name, regmap=SEED):
    return regmap.offset(name)


def run(body, pause=None, processes=(), **kwargs):
    kwargs.setdefault("queues", 4)
    return simulate(EndpointParams(**kwargs), body, pause=pause, processes=processes)


async def pulse(ctx, signal, value=1):
    ctx.set(signal, value)
    await ctx.tick()
    ctx.set(signal, 0)


async def queue_state(ctx, dut, q):
    port = dut.device.queue
    ctx.set(port.sel, q)
    await ctx.tick()
    return {name: ctx.get(getattr(port, name))
            for name in ("ready", "num", "desc", "driver", "device")}


async def readable_snapshot(bus, regmap, skip=("ConfigGeneration",)):
    return {r.name: await bus.read(r.offset, r.width // 8)
            for r in regmap if r.readable and r.name not in skip}


# ------------------------------------------------------------------------------ identification

@pytest.mark.parametrize("profile,version", [("seed", 3), ("plain-v2", 2)])
def test_identification(profile, version):
    async def body(ctx, dut, bus, drv):
        info = await drv.probe()
        assert (info.magic, info.version, info.device_id, info.vendor_id) == \
            (MAGIC_VALUE, version, 0x1A, 0xABCD)
        if version == 3:
            assert info.notify_layout == (dut.params.notify_base, dut.params.notify_multiplier)
        else:
            assert await bus.read(drv.regmap.offset("QueueNotify")) == 0
    run(body, profile=profile, device_id=0x1A, vendor_id=0xABCD)


def test_stock_linux_rejects_version_3_but_takes_plain_v2():
    async def body(ctx, dut, bus, drv):
        with pytest.raises(DriverError, match="Version 3"):
            await VirtioMmioDriver(bus, "seed", accepted_versions=(1, 2)).probe()
    run(body)

    async def body(ctx, dut, bus, drv):
        await VirtioMmioDriver(bus, "plain-v2", accepted_versions=(1, 2)).probe()
    run(body, profile="plain-v2")


# ------------------------------------------------------------------------------ features

def test_device_features_selector():
    offered = V1 | 1 << Feature.RING_EVENT_IDX | 1 << 63 | 1
    async def body(ctx, dut, bus, drv):
        assert await drv.device_features() == offered
        for sel, word in ((0, offered & 0xFFFF_FFFF), (1, offered >> 32), (2, 0), (0xFFFF, 0)):
            await bus.write(off("DeviceFeaturesSel"), sel)
            assert await bus.read(off("DeviceFeatures")) == word
    run(body, features=offered)


def test_driver_features_and_features_ok():
    offered = V1 | 1 << Feature.RING_EVENT_IDX
    async def body(ctx, dut, bus, drv):
        await drv.reset()
        await drv.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
        # Selector >= 2 is ignored.
        await bus.write(off("DriverFeaturesSel"), 2)
        await bus.write(off("DriverFeatures"), 0xFFFF_FFFF)
        await drv.write_driver_features(offered)
        assert ctx.get(dut.device.features) == 0        # not presented before FEATURES_OK
        await drv.add_status(Status.FEATURES_OK)
        assert await drv.get_status() & Status.FEATURES_OK
        assert ctx.get(dut.device.features) == offered
        # Frozen once FEATURES_OK is set.
        await drv.write_driver_features(0)
        assert ctx.get(dut.device.features) == offered
    run(body, features=offered)


@pytest.mark.parametrize("accepted", [V1 | 1 << 5, 1 << Feature.RING_EVENT_IDX, 0])
def test_features_ok_refused(accepted):
    """An accepted bit that was not offered, or no VERSION_1: FEATURES_OK does not stick, the
    other bits of that write do."""
    async def body(ctx, dut, bus, drv):
        await drv.reset()
        await drv.add_status(Status.ACKNOWLEDGE)
        await drv.write_driver_features(accepted)
        await bus.write(off("Status"), Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
        assert await drv.get_status() == Status.ACKNOWLEDGE | Status.DRIVER
        assert ctx.get(dut.device.features) == 0
    run(body, features=V1 | 1 << Feature.RING_EVENT_IDX)


# ------------------------------------------------------------------------------ status

def test_status_only_adds_bits():
    async def body(ctx, dut, bus, drv):
        await bus.write(off("Status"), Status.ACKNOWLEDGE | Status.DRIVER)
        await bus.write(off("Status"), Status.ACKNOWLEDGE)           # clears DRIVER: ignored
        assert await drv.get_status() == Status.ACKNOWLEDGE | Status.DRIVER
        await bus.write(off("Status"), Status.DRIVER)                # clears ACK: ignored
        assert await drv.get_status() == Status.ACKNOWLEDGE | Status.DRIVER
        await bus.write(off("Status"), 0x43)                         # bit 6 is the device's
        assert await drv.get_status() == 0x03
        await bus.write(off("Status"), 0x07, size=1)                 # partial: ignored
        assert await drv.get_status() == 0x03
        await bus.write(off("Status"), 0x07)
        assert await drv.get_status() == 0x07
        assert ctx.get(dut.device.driver_ok) == 1 and ctx.get(dut.device.status) == 0x07
        await bus.write(off("Status"), 0x87)                         # FAILED can be added
        assert await drv.get_status() == 0x87
    run(body)


def test_needs_reset_sets_bit_6_and_raises_config_interrupt():
    async def body(ctx, dut, bus, drv):
        await bus.write(off("Status"), 0x03)
        await pulse(ctx, dut.device.needs_reset)
        assert await drv.get_status() == 0x43
        assert ctx.get(dut.irq)
        assert await bus.read(off("InterruptStatus")) == 0b10
        # A driver that read Status before bit 6 rose and adds a bit keeps bit 6 set.
        await bus.write(off("Status"), 0x83)
        assert await drv.get_status() == 0xC3
        await drv.reset()
        assert await drv.get_status() == 0
    run(body)


def test_device_reset_clears_everything_but_config_generation():
    async def body(ctx, dut, bus, drv):
        await drv.initialize(queues=[dict(index=q, size=8, desc=0x1000 + q, driver=0x2000 + q,
                                          device=0x3000 + q) for q in range(4)])
        await pulse(ctx, dut.device.config_changed)
        await pulse(ctx, dut.device.used_valid)
        await bus.write(off("QueueSel"), 2)
        await bus.write(off("SHMSel"), 7)
        await bus.write(off("DeviceFeaturesSel"), 1)
        await bus.write(off("MsiAddrLow"), 0x1234)
        assert await bus.read(off("ConfigGeneration")) == 1
        assert ctx.get(dut.irq)
        await bus.write(off("Status"), 0)
        # The reset is complete before the next access.
        assert ctx.get(dut.device.status) == 0 and ctx.get(dut.irq) == 0
        assert ctx.get(dut.device.driver_ok) == 0 and ctx.get(dut.device.features) == 0
        assert await bus.read(off("InterruptStatus")) == 0
        assert await bus.read(off("ConfigGeneration")) == 1
        assert await bus.read(off("DeviceFeatures")) == V1 & 0xFFFF_FFFF   # selector back at 0
        assert await bus.read(off("QueueReady")) == 0
        assert await bus.read(off("QueueNumMax")) == 8                     # QueueSel back at 0
        assert await bus.read(off("SHMLenLow")) == 0x5000                  # SHMSel back at 0
        for q in range(4):
            assert await queue_state(ctx, dut, q) == dict(ready=0, num=8, desc=0, driver=0,
                                                          device=0)
    run(body, queue_size=8, shm=[(0, 0x4000, 0x5000)])


def test_device_reset_pulse_is_one_cycle():
    async def body(ctx, dut, bus, drv):
        await bus.write(off("Status"), 1)
        seen = []
        await bus.write(off("Status"), 0)
        for _ in range(4):
            seen.append(ctx.get(dut.device.device_reset))
            await ctx.tick()
        assert sum(seen) <= 1

    pulses = []
    def monitor(dut):
        async def process(ctx):
            async for _, _, value in ctx.tick().sample(dut.device.device_reset):
                pulses.append(value)
        return process
    run(body, processes=[monitor])
    assert "".join(map(str, pulses)).count("1") == 1
    assert "11" not in "".join(map(str, pulses))


def test_reset_in_the_middle_of_queue_setup():
    async def body(ctx, dut, bus, drv):
        await bus.write(off("QueueSel"), 1)
        await bus.write(off("QueueNum"), 16)
        await bus.write(off("QueueDescLow"), 0xAAAA0000)
        await drv.reset()
        assert await queue_state(ctx, dut, 1) == dict(ready=0, num=64, desc=0, driver=0,
                                                      device=0)
        # The setup can be done again from scratch.
        await drv.setup_queue(1, 32, desc=0x10, driver=0x20, device=0x30)
        assert await queue_state(ctx, dut, 1) == dict(ready=1, num=32, desc=0x10, driver=0x20,
                                                      device=0x30)
    run(body, queue_size=64)


# ------------------------------------------------------------------------------ queues

def test_queue_setup_and_teardown_per_queue_sizes():
    sizes = [16, 256, 1, 32768]
    async def body(ctx, dut, bus, drv):
        for q, size in enumerate(sizes):
            await bus.write(off("QueueSel"), q)
            assert await bus.read(off("QueueNumMax")) == size
        for q in range(4):
            await drv.setup_queue(q, desc=(q + 1) << 40 | 0x100, driver=(q + 1) << 36 | 0x200,
                                  device=(q + 1) << 33 | 0x300)
        for q, size in enumerate(sizes):
            assert await queue_state(ctx, dut, q) == dict(
                ready=1, num=size, desc=(q + 1) << 40 | 0x100, driver=(q + 1) << 36 | 0x200,
                device=(q + 1) << 33 | 0x300)
        await drv.teardown_queue(2)
        assert (await queue_state(ctx, dut, 2))["ready"] == 0
        assert (await queue_state(ctx, dut, 3))["ready"] == 1
    run(body, queue_size=sizes)


def test_queue_num_rules():
    async def body(ctx, dut, bus, drv):
        await bus.write(off("QueueSel"), 0)
        assert (await queue_state(ctx, dut, 0))["num"] == 64      # reset: = QueueNumMax
        for bad in (0, 65, 0x10040):
            await bus.write(off("QueueNum"), bad)
            assert (await queue_state(ctx, dut, 0))["num"] == 64
        await bus.write(off("QueueNum"), 3)          # any size up to the maximum
        assert (await queue_state(ctx, dut, 0))["num"] == 3
        await bus.write(off("QueueNum"), 5, size=2)  # partial: ignored
        assert (await queue_state(ctx, dut, 0))["num"] == 3
        await bus.write(off("QueueReady"), 1)
        await bus.write(off("QueueNum"), 8)          # ignored while ready
        await bus.write(off("QueueDescLow"), 0x1111)
        await bus.write(off("QueueDriverHigh"), 0x2222)
        assert await queue_state(ctx, dut, 0) == dict(ready=1, num=3, desc=0, driver=0,
                                                      device=0)
        await bus.write(off("QueueReady"), 0)
        await bus.write(off("QueueNum"), 8)
        await bus.write(off("QueueDeviceHigh"), 0x3333)
        assert await queue_state(ctx, dut, 0) == dict(ready=0, num=8, desc=0, driver=0,
                                                      device=0x3333 << 32)
    run(body, queue_size=64)


def test_queue_sel_out_of_range():
    async def body(ctx, dut, bus, drv):
        for sel in (4, 5, 0xFFFF_FFFF, 1 << 16):
            await bus.write(off("QueueSel"), sel)
            assert await bus.read(off("QueueNumMax")) == 0
            assert await bus.read(off("QueueReady")) == 0
            await bus.write(off("QueueNum"), 2)
            await bus.write(off("QueueDescLow"), 0xDEAD)
            await bus.write(off("QueueReady"), 1)
            assert await bus.read(off("QueueReady")) == 0
        # Nothing leaked into a real queue (the index bits alias queue 0).
        for q in range(4):
            assert await queue_state(ctx, dut, q) == dict(ready=0, num=16, desc=0, driver=0,
                                                          device=0)
        assert await queue_state(ctx, dut, 4) == dict(ready=0, num=0, desc=0, driver=0,
                                                      device=0)
    run(body, queue_size=16)


@pytest.mark.parametrize("queues", [4, 40, 300])
def test_many_queues_setup_reset_and_device_port(queues):
    """Queues spread over the whole index range (flags in flip-flops for 4, in block RAM for 40
    and 300): set up, read back through the registers and the device port, torn down, reset,
    and set up again after the reset."""
    rng = random.Random(queues)
    picked = sorted(rng.sample(range(queues), 4) + [0, queues - 1])
    picked = sorted(set(picked))

    def layout(q, rep):
        return dict(ready=1, num=1 + (q + rep) % 8, desc=(rep << 40) | q << 4,
                    driver=(rep << 36) | q << 5, device=(rep << 33) | q << 6)

    async def body(ctx, dut, bus, drv):
        for rep in (1, 2):
            for q in picked:
                want = layout(q, rep)
                await drv.setup_queue(q, want["num"], desc=want["desc"], driver=want["driver"],
                                      device=want["device"])
            for q in picked:
                await bus.write(off("QueueSel"), q)
                assert await bus.read(off("QueueReady")) == 1
                assert await queue_state(ctx, dut, q) == layout(q, rep)
            # Neighbours in the same block-RAM word are untouched.
            for q in {q ^ 1 for q in picked} - set(picked):
                if q < queues:
                    assert await queue_state(ctx, dut, q) == dict(ready=0, num=8, desc=0,
                                                                  driver=0, device=0)
            await drv.teardown_queue(picked[0])
            assert (await queue_state(ctx, dut, picked[0]))["ready"] == 0
            assert (await queue_state(ctx, dut, picked[-1]))["ready"] == 1
            await drv.reset()
            for q in picked:
                await bus.write(off("QueueSel"), q)
                assert await bus.read(off("QueueReady")) == 0
                assert await queue_state(ctx, dut, q) == dict(ready=0, num=8, desc=0,
                                                              driver=0, device=0)
    run(body, queues=queues, queue_size=8, notify_multiplier=4)


# ------------------------------------------------------------------------------ interrupts

def test_interrupt_status_ack_and_irq():
    async def body(ctx, dut, bus, drv):
        assert not ctx.get(dut.irq)
        await pulse(ctx, dut.device.used_valid)
        assert ctx.get(dut.irq) and await bus.read(off("InterruptStatus")) == 0b01
        await pulse(ctx, dut.device.config_changed)
        assert await bus.read(off("InterruptStatus")) == 0b11
        await bus.write(off("InterruptACK"), 0b10, size=1)   # partial: ignored
        assert await bus.read(off("InterruptStatus")) == 0b11
        await bus.write(off("InterruptACK"), 0b10)           # clears only bit 1
        assert await bus.read(off("InterruptStatus")) == 0b01 and ctx.get(dut.irq)
        assert await drv.interrupt() == 0b01
        assert not ctx.get(dut.irq)
        # Used events for queues >= N are ignored.
        ctx.set(dut.device.used_queue, 4)
        await pulse(ctx, dut.device.used_valid)
        assert not ctx.get(dut.irq)
    run(body)


def test_event_storm_during_acks_loses_nothing():
    """Events on every cycle while the driver acknowledges: a model of InterruptStatus, fed
    with the same events and the acks the core takes, matches irq on every cycle and the
    driver's final read."""
    rng = random.Random(7)
    model = [0]
    mismatches = []
    ack_word = SEED["InterruptACK"].word

    def storm(dut):
        core_bus = dut.core.bus
        async def process(ctx):
            async for _, _, irq, used, queue, config, wv, wr, wa, wd, ws in ctx.tick().sample(
                    dut.irq, dut.device.used_valid, dut.device.used_queue,
                    dut.device.config_changed,
                    core_bus.w_valid, core_bus.w_ready, core_bus.w_addr, core_bus.w_data,
                    core_bus.w_strb):
                if irq != (model[0] != 0):
                    mismatches.append((model[0], irq))
                ack = wd & 3 if wv and wr and wa == ack_word and ws == 0xF else 0
                events = (used and queue < 4) | config << 1
                model[0] = (model[0] & ~ack) | events
                ctx.set(dut.device.used_valid, rng.random() < 0.3)
                ctx.set(dut.device.used_queue, rng.randrange(6))
                ctx.set(dut.device.config_changed, rng.random() < 0.1)
        return process

    async def body(ctx, dut, bus, drv):
        for _ in range(60):
            await drv.interrupt()
        assert ctx.get(dut.irq) == (model[0] != 0)

    run(body, processes=[storm])
    assert mismatches == []


def test_config_generation_counts_config_changes():
    async def body(ctx, dut, bus, drv):
        assert await bus.read(off("ConfigGeneration")) == 0
        for _ in range(3):
            await pulse(ctx, dut.device.config_changed)
        assert await bus.read(off("ConfigGeneration")) == 3
        await pulse(ctx, dut.device.needs_reset)           # not a config change
        assert await bus.read(off("ConfigGeneration")) == 3
    run(body)


# ------------------------------------------------------------------------------ shared memory

def test_shared_memory_regions():
    async def body(ctx, dut, bus, drv):
        assert await drv.shm_region(2) == (0x1_0000_0000, 0x2000)
        assert await drv.shm_region(9) == (0xFFFF_0000_0000_0000, 0x10)
        assert await drv.shm_region(0) is None
    run(body, shm=[(2, 0x1_0000_0000, 0x2000), (9, 0xFFFF_0000_0000_0000, 0x10)])

    async def body(ctx, dut, bus, drv):
        assert await drv.shm_region(0) is None
        for name in ("SHMLenLow", "SHMLenHigh", "SHMBaseLow", "SHMBaseHigh"):
            assert await bus.read(off(name)) == 0xFFFF_FFFF
    run(body)


# ------------------------------------------------------------------------------ config space

def config_device(store):
    """A device answering the config port from ``store`` (a bytearray), one cycle later."""
    def factory(dut):
        async def process(ctx):
            cfg = dut.device.config
            async for _, _, re, we, addr, wdata, be in ctx.tick().sample(
                    cfg.re, cfg.we, cfg.addr, cfg.wdata, cfg.be):
                assert not (re and we)
                if we:
                    for lane in range(4):
                        if be >> lane & 1:
                            store[addr + lane] = wdata >> 8 * lane & 0xFF
                ctx.set(dut.device.config.rdata, int.from_bytes(store[addr:addr + 4], "little")
                        if re else 0xBAD0BAD0)
        return process
    return factory


def test_config_space_pass_through():
    store = bytearray(range(64))
    async def body(ctx, dut, bus, drv):
        assert await drv.read_config(0, 4) == 0x03020100
        assert await drv.read_config(6, 2) == 0x0706
        assert await drv.read_config(13, 1) == 13
        await drv.write_config(8, 0xEE, 1)
        await drv.write_config(10, 0xBEEF, 2)
        await drv.write_config(12, 0x12345678, 4)
        assert await drv.read_config(8, 4) == 0xBEEF09EE
        assert await drv.read_config(12, 4) == 0x12345678
        assert store[8:16] == bytes.fromhex("EE09EFBE78563412")
        data, tries = await drv.read_config_bytes(0, 16)
        assert data == bytes(store[:16]) and tries == 1
        # Beyond config_size: reads 0, writes never reach the device.
        assert await bus.read(CONFIG_BASE + 64) == 0
        await bus.write(CONFIG_BASE + 64, 0xFFFF_FFFF)
        assert store == bytes(range(8)) + bytes.fromhex("EE09EFBE78563412") + bytes(range(16, 64))
    run(body, processes=[config_device(store)], config_size=64)


def test_config_generation_retry_loop_sees_a_concurrent_change():
    store = bytearray(16)
    def changer(dut):
        async def process(ctx):
            # Change the field between the two word reads of the first attempt.
            count = 0
            async for _, _, re, addr in ctx.tick().sample(dut.device.config.re,
                                                          dut.device.config.addr):
                ctx.set(dut.device.config_changed, 0)
                if re and addr == 0:
                    count += 1
                    if count == 1:
                        store[0:8] = bytes([0x55] * 8)
                        ctx.set(dut.device.config_changed, 1)
        return process

    async def body(ctx, dut, bus, drv):
        data, tries = await drv.read_config_bytes(0, 8)
        assert tries == 2 and data == bytes([0x55] * 8)
    run(body, processes=[config_device(store), changer], config_size=16)


# ------------------------------------------------------------------------------ illegal accesses

@pytest.mark.parametrize("profile", ["seed", "plain-v2"])
def test_reserved_write_only_and_read_only_accesses(profile):
    regmap = RegisterMap(profile)
    async def body(ctx, dut, bus, drv):
        await drv.initialize(queues=[dict(index=0, size=4, desc=8, driver=16, device=32)])
        before = await readable_snapshot(bus, regmap)
        for word in regmap.reserved_words():
            assert await bus.read(4 * word) == 0
            await bus.write(4 * word, 0xFFFF_FFFF)
        for reg in regmap:
            if not reg.readable:
                assert await bus.read(reg.offset, reg.width // 8) == 0, reg.name
        for reg in regmap:
            if reg.access == "R":
                await bus.write(reg.offset, 0, reg.width // 8)
        # Between config space and the doorbells, and past the last doorbell: reserved.
        top = (1 << dut.params.addr_width) - 4
        for offset in (dut.params.config_end, top):
            assert offset < dut.params.notify_base or offset >= dut.params.doorbell_end
            assert await bus.read(offset) == 0
            await bus.write(offset, 0xFFFF_FFFF)
        assert await readable_snapshot(bus, regmap) == before
        assert await queue_state(ctx, dut, 0) == dict(ready=1, num=4, desc=8, driver=16,
                                                      device=32)
    kwargs = dict(notify_base=0x180) if profile == "seed" else {}
    run(body, profile=profile, config_size=16, **kwargs)


def test_random_pauses_on_every_channel():
    rng = random.Random(3)
    async def body(ctx, dut, bus, drv):
        for rep in range(3):
            await drv.initialize(queues=[dict(index=q, size=16, desc=rep << 12 | q,
                                              driver=rep << 16 | q, device=rep << 20 | q)
                                         for q in range(4)])
            for q in range(4):
                assert await queue_state(ctx, dut, q) == dict(
                    ready=1, num=16, desc=rep << 12 | q, driver=rep << 16 | q,
                    device=rep << 20 | q)
    run(body, pause=lambda: rng.random() < 0.5, queue_size=32)
