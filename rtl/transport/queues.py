"""The virtqueues (docs/spec.md §4 0x030–0x044, 0x080–0x0A4, §9 queue-state port): QueueSel,
the per-queue registers, the queue table and the device-side read port."""

from dataclasses import dataclass

from amaranth.hdl import Array, C, Cat, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..compare import at_most, below
from .queue_flags import BLOCK_FLAGS_QUEUES, queue_flags
from ..regmap import Field, Register
from .block import Block, BlockLogic


__all__ = ["QueueStatePort", "Queues"]


class QueueStatePort(wiring.Signature):
    """Device-side queue-state read port (docs/spec.md §9), seen from the device logic.

    ``q_sel`` is sampled every cycle; one cycle later ``q_ready``, ``q_num``, ``q_desc``,
    ``q_driver`` and ``q_device`` show that queue's state as it was when ``q_sel`` was sampled
    (all zero for ``q_sel >= N``)."""

    def __init__(self):
        super().__init__({
            "sel": Out(16), "ready": In(1), "num": In(16),
            "desc": In(64), "driver": In(64), "device": In(64),
        })


#: One row of the queue table: num(16) desc(64) driver(64) device(64), written in 16-bit lanes.
ROW = data.StructLayout({"num": 16, "desc": 64, "driver": 64, "device": 64})
#: The 32-bit halves of the 64-bit fields, each two 16-bit lanes of the row after num.
HALVES = {"desc": ("QueueDescLow", "QueueDescHigh"),
          "driver": ("QueueDriverLow", "QueueDriverHigh"),
          "device": ("QueueDeviceLow", "QueueDeviceHigh")}


class QueuesLogic(BlockLogic):
    """QueueSel and the per-queue flags (:mod:`~virtio_mmio.transport.queue_flags`: flip-flops for small
    N, block RAM beyond), the queue table (a memory of :data:`ROW`), and the device-side port
    (the core's ``queue`` member).

    A row is only meaningful once written since the last device reset; reads of unwritten
    rows give reset values, so a device reset clears every queue in one cycle whatever N is.
    """

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        self.flags = queue_flags(params.queues)
        self.queue_sel_num_max = Signal(16, init=params.queue_sizes[0])

    def elaborate(self, m, t):
        p = self.params
        n = p.queues
        qbits = max(1, (n - 1).bit_length())
        wd, dt, at = t.data, t.dt, t.at
        m.submodules.queue_flags = flags = self.flags
        queue_sel, queue_sel_ok, queue_sel_ready = flags.sel, flags.sel_ok, flags.sel_ready
        queue_sel_num_max = self.queue_sel_num_max
        sizes = Array(C(s, 16) for s in p.queue_sizes) if not p.uniform_queue_size else None

        def size_of(index):
            return C(p.queue_sizes[0], 16) if sizes is None else sizes[index]

        # Beyond a small N in block RAM whatever the device: Yosys would otherwise build it
        # from LUT RAM on ECP5 (~400 LUT4 at N = 64). Below, left to Yosys (flip-flops at
        # N = 1: 13 iCE40 block RAMs would save 3 logic cells).
        m.submodules.queue_table = table = memory.Memory(
            shape=unsigned(ROW.size), depth=n, init=[],
            attrs={"ram_style": "block"} if n > BLOCK_FLAGS_QUEUES else {})
        table_w = table.write_port(granularity=16)
        table_r = table.read_port(transparent_for=())

        # ---- QueueSel, QueueReady (the index always from the write data, so that the flags'
        # read of the new group does not wait for the decision to take the write)
        index = wd[:qbits]
        m.d.comb += [flags.select_index.eq(index), flags.select_ok.eq(dt.word_queue_ok)]
        with m.If(t.written("QueueSel") & t.full):
            m.d.comb += flags.select.eq(1)
            m.d.sync += queue_sel_num_max.eq(size_of(index))
        with m.If(t.written("QueueReady") & t.full & queue_sel_ok):
            m.d.comb += [flags.set_ready.eq(1), flags.ready_value.eq(wd[0])]
        m.d.comb += flags.reset.eq(t.device_reset)

        # ---- queue table writes, flat: "a field write is taken" and "which lanes" are each a
        # short function of flip-flops (the tags are one-hot).
        half_tags = [at[name] for names in HALVES.values() for name in names]
        num_ok = (wd != 0) & at_most(wd, queue_sel_num_max, 16)
        field_hit = (at.QueueNum & num_ok) | Cat(*half_tags).any()
        field_taken = Signal()
        m.d.comb += field_taken.eq(t.write & t.full & queue_sel_ok & ~queue_sel_ready &
                                   field_hit)
        # The table write (and its "written" flag) lands one clock later, from flip-flops, so
        # the decision to write ends in a few registers rather than in the row's write
        # enables. A field write in the next cycle is to the same queue (QueueSel changes at
        # the edge after a QueueSel write), so it counts the pending write as having written
        # the row. A device reset in that cycle wins over the flag (the row then reads as
        # unwritten). Only the device-side queue port sees the change a clock later; no
        # register reads the table. For the same reason the pending write's queue is still
        # the selected one (``queue_sel``), as is its QueueNumMax.
        pending_mark = Signal()         # a field write is pending
        pending_whole = Signal()        # ... the first since reset: the whole row
        pending_lanes = Signal(13)      # ... of these lanes (one field)
        pending_data = Signal(32)
        m.d.sync += [
            pending_mark.eq(field_taken),
            pending_whole.eq(~(flags.sel_written | pending_mark)),
            pending_lanes.eq(Cat(at.QueueNum, *(tag for tag in half_tags for _ in range(2)))),
            pending_data.eq(wd),
        ]
        # The row as written: the field from the data, the rest at reset value (they are
        # written only by the first write since reset, which writes the whole row).
        field_value = Signal(ROW)
        m.d.comb += field_value.num.eq(Mux(pending_lanes[0], pending_data, queue_sel_num_max))
        for i, member in enumerate(HALVES):
            for half in range(2):
                lane = 1 + 4 * i + 2 * half
                m.d.comb += getattr(field_value, member)[32 * half:32 * half + 32].eq(
                    Mux(pending_lanes[lane], pending_data, 0))
        m.d.comb += [
            table_w.addr.eq(queue_sel),
            table_w.data.eq(field_value),
            table_w.en.eq(Mux(pending_mark, pending_lanes | Mux(pending_whole, 0x1FFF, 0), 0)),
            flags.mark_written.eq(pending_mark),
        ]

        # ---- device queue port
        qp = t.core.queue
        q_sel_ok = Signal()
        q_ready, q_written = flags.q_ready, flags.q_written
        q_size = Signal(16)
        q_index = qp.sel[:qbits]
        m.d.comb += [table_r.addr.eq(q_index), flags.q_index.eq(q_index)]
        m.d.sync += [
            q_sel_ok.eq(below(qp.sel, n)),
            q_size.eq(size_of(q_index)),
        ]
        table_row = Signal(ROW)
        m.d.comb += table_row.eq(table_r.data)
        with m.If(q_sel_ok):
            m.d.comb += qp.ready.eq(q_ready)
            with m.If(q_written):
                m.d.comb += [
                    qp.num.eq(table_row.num), qp.desc.eq(table_row.desc),
                    qp.driver.eq(table_row.driver), qp.device.eq(table_row.device),
                ]
            with m.Else():
                m.d.comb += qp.num.eq(q_size)

    def read(self, t):
        flags = self.flags
        return {"QueueNumMax": Mux(flags.sel_ok, self.queue_sel_num_max, 0),
                "QueueReady": flags.sel_ready}

    def device_reset(self):
        return [self.queue_sel_num_max.eq(self.params.queue_sizes[0])]


@dataclass(frozen=True)
class Queues(Block):
    name = "queues"
    Logic = QueuesLogic

    def rows(self, profile):
        rows = [
            Register("QueueSel", 0x030, "W", "Selects the queue for the Queue* registers"),
            Register("QueueNumMax", 0x034, "R",
                     "Maximum size of the selected queue; 0 when QueueSel >= N",
                     reset="queue_size"),
            Register("QueueNum", 0x038, "W",
                     "Size of the selected queue; ignored if 0, > QueueNumMax, QueueSel >= N "
                     "or the queue is ready", reset="queue_size"),
            Register("QueueReady", 0x044, "RW",
                     "Bit 0: the selected queue is ready; 0 when QueueSel >= N",
                     fields=(Field("ready", 0, 1),)),
        ]
        for base, name in ((0x080, "Desc"), (0x090, "Driver"), (0x0A0, "Device")):
            for half, suffix in ((0, "Low"), (4, "High")):
                rows.append(Register(
                    f"Queue{name}{suffix}", base + half, "W",
                    f"Bits [{32 * half // 4 + 31}:{32 * half // 4}] of the selected queue's "
                    f"{name.lower()} area address; ignored while ready or QueueSel >= N"))
        return tuple(rows)

    def data_tags(self, params):
        # The whole word names an existing queue (QueueSel; QueueNotify without notification
        # data).
        return {"word_queue_ok": lambda value, strb: below(value, params.queues)}
