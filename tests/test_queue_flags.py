"""The per-queue flags in block RAM behave cycle for cycle like the flip-flop version (which
the invariant proofs cover), and both like a Python model; plus the choice by N."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from virtio_mmio.transport.queue_flags import (BLOCK_FLAGS_QUEUES, BlockQueueFlags, RegisterQueueFlags,
                                     queue_flags)


OUTPUTS = ("sel", "sel_ok", "sel_ready", "sel_written", "q_ready", "q_written")


class Model:
    def __init__(self, n):
        self.n = n
        self.bits = max(1, (n - 1).bit_length())
        self.reset()

    def reset(self):
        self.ready = [0] * self.n
        self.written = [0] * self.n
        self.sel, self.sel_ok = 0, 1

    def flag(self, flags, index):
        return flags[index] if index < self.n else 0


@pytest.mark.parametrize("queues", [3, 17, 40, 100, 2047])
def test_block_flags_match_flip_flops_and_model(queues):
    rng = random.Random(queues)
    m = Module()
    m.submodules.ff = ff = RegisterQueueFlags(queues)
    m.submodules.block = block = BlockQueueFlags(queues)
    model = Model(queues)
    mask = (1 << model.bits) - 1
    # Few distinct queues, so selections and device-port reads meet the same groups and words.
    hot = rng.sample(range(queues), min(queues, 6)) + [queues - 1, 0]
    cycles = 3000 if queues < 1000 else 1200
    checked = {"ready": 0, "written": 0}

    async def bench(ctx):
        q_expect = None
        for cycle in range(cycles):
            # Inputs of this cycle (at most one register write per cycle, as in the core).
            action = rng.choice(["select", "ready", "mark", "idle", "idle", "reset"]
                                if rng.random() < 0.97 else ["reset"])
            index = rng.choice(hot) if rng.random() < 0.9 else rng.randrange(1 << model.bits)
            ok = index < queues
            value = rng.getrandbits(1)
            q_index = rng.choice(hot) & mask
            # A row-written mark lands a clock after its field write, so in the core it may
            # come with any register write of the next cycle (a QueueSel or QueueReady write).
            mark = action == "mark" or (action != "idle" and rng.random() < 0.3)
            for dut in (ff, block):
                ctx.set(dut.select, action == "select")
                ctx.set(dut.select_index, index & mask)
                ctx.set(dut.select_ok, ok)
                ctx.set(dut.set_ready, action == "ready" and model.sel_ok)
                ctx.set(dut.ready_value, value)
                ctx.set(dut.mark_written, mark and model.sel_ok)
                ctx.set(dut.reset, action == "reset")
                ctx.set(dut.q_index, q_index)
            # Outputs before the clock edge: both implementations and the model agree.
            expect = {
                "sel": model.sel, "sel_ok": model.sel_ok,
                "sel_ready": int(model.sel_ok and model.flag(model.ready, model.sel)),
                "sel_written": int(model.sel_ok and model.flag(model.written, model.sel)),
            }
            if q_expect is not None:
                expect.update(q_expect)
            for name in OUTPUTS:
                if name not in expect:
                    continue
                got_ff, got_block = ctx.get(getattr(ff, name)), ctx.get(getattr(block, name))
                assert got_ff == got_block == expect[name], \
                    f"cycle {cycle}: {name} ff={got_ff} block={got_block} model={expect[name]}"
            checked["ready"] += expect["sel_ready"]
            checked["written"] += expect["sel_written"]
            # The device port shows the state before this cycle's write.
            q_expect = {"q_ready": model.flag(model.ready, q_index),
                        "q_written": model.flag(model.written, q_index)}
            await ctx.tick()
            # The model takes the cycle's writes (the mark to the queue selected before).
            if mark and model.sel_ok and action != "reset":
                model.written[model.sel] = 1
            if action == "reset":
                model.reset()
            elif action == "select":
                model.sel, model.sel_ok = index & mask, int(ok)
            elif action == "ready" and model.sel_ok:
                model.ready[model.sel] = value

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # The stimulus reached set flags, not just the reset state.
    assert checked["ready"] > 20 and checked["written"] > 20, checked


def test_choice_by_queue_count():
    assert isinstance(queue_flags(1), RegisterQueueFlags)
    assert isinstance(queue_flags(BLOCK_FLAGS_QUEUES), RegisterQueueFlags)
    assert isinstance(queue_flags(BLOCK_FLAGS_QUEUES + 1), BlockQueueFlags)
    assert isinstance(queue_flags(4, block=True), BlockQueueFlags)
    assert isinstance(queue_flags(2047, block=False), RegisterQueueFlags)
