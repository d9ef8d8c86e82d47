"""Per-queue flags of the register core: QueueReady and "queue-table row written since the
last device reset", with the selected queue (QueueSel) they are read and written through.

Two implementations behind one interface (:class:`QueueFlagsSignature`), chosen by N:

* :class:`RegisterQueueFlags` (N <= :data:`BLOCK_FLAGS_QUEUES`): two flip-flops per queue.
* :class:`BlockQueueFlags` (larger N): the flags of 16 queues share one word of a memory,
  with one flip-flop per word saying whether the word was written since the last device reset
  (a word that was not reads as all clear, so a device reset still clears every queue in one
  cycle). Logic does not grow with N but for those per-word bits.

Both give the same cycle behaviour, so the register core does not know which one it has.
"""

from amaranth.hdl import *
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BLOCK_FLAGS_QUEUES", "FLAG_GROUP", "QueueFlagsSignature", "RegisterQueueFlags",
           "BlockQueueFlags", "queue_flags"]


#: Largest N kept in flip-flops. Chosen by measurement (synth_ecp5, flip-flop version):
#: ~8 LUT4 per queue, so the block version (one DP16KD pair, ~60 LUT4 of fixed cost) pays
#: from a few dozen queues on.
BLOCK_FLAGS_QUEUES = 32
#: Queues per block-RAM word.
FLAG_GROUP = 16


def _index_bits(queues):
    return max(1, (queues - 1).bit_length())


class QueueFlagsSignature(wiring.Signature):
    """Seen from the flags (the register core drives the ``In`` members).

    Members
    -------
    select, select_index, select_ok : In
        QueueSel is written this cycle with a value whose low bits are ``select_index``;
        ``select_ok``: the value is below N.
    reset : In(1)
        Device reset: every flag clear, queue 0 selected.
    set_ready, ready_value : In
        QueueReady of the selected queue becomes ``ready_value`` (the core checks the rules).
    mark_written : In(1)
        The selected queue's table row has been written.
    sel, sel_ok : Out
        The selected queue (its low bits) and whether QueueSel is below N.
    sel_ready, sel_written : Out(1)
        The selected queue's flags now (0 while ``sel_ok`` is low).
    q_index : In
        Device-side queue port: the queue to look at (only its low bits; the core checks the
        range).
    q_ready, q_written : Out(1)
        One cycle later, that queue's flags as they were when ``q_index`` was sampled.
    """

    def __init__(self, queues):
        bits = _index_bits(queues)
        super().__init__({
            "select": In(1), "select_index": In(bits), "select_ok": In(1),
            "reset": In(1), "set_ready": In(1), "ready_value": In(1), "mark_written": In(1),
            "sel": Out(bits), "sel_ok": Out(1, init=1),
            "sel_ready": Out(1), "sel_written": Out(1),
            "q_index": In(bits), "q_ready": Out(1), "q_written": Out(1),
        })


class RegisterQueueFlags(wiring.Component):
    """The flags in flip-flops (small N)."""

    def __init__(self, queues):
        self._queues = queues
        super().__init__(QueueFlagsSignature(queues))

    def elaborate(self, platform):
        m = Module()
        n = self._queues
        ready = Signal(n)
        written = Signal(n)
        # The selected queue's ready flag has its own flip-flop: the read and write paths of
        # QueueReady then do not go through an N-way multiplexer.
        sel_ready = Signal()
        m.d.comb += [
            self.sel_ready.eq(sel_ready),
            self.sel_written.eq(self.sel_ok & written.bit_select(self.sel, 1)),
        ]
        with m.If(self.select):
            m.d.sync += [
                self.sel.eq(self.select_index), self.sel_ok.eq(self.select_ok),
                sel_ready.eq(self.select_ok & ready.bit_select(self.select_index, 1)),
            ]
        with m.If(self.set_ready):
            m.d.sync += [ready.bit_select(self.sel, 1).eq(self.ready_value),
                         sel_ready.eq(self.ready_value)]
        with m.If(self.mark_written):
            m.d.sync += written.bit_select(self.sel, 1).eq(1)
        m.d.sync += [
            self.q_ready.eq(ready.bit_select(self.q_index, 1)),
            self.q_written.eq(written.bit_select(self.q_index, 1)),
        ]
        with m.If(self.reset):
            m.d.sync += self._device_reset(sel_ready, ready, written)
        return m

    def _device_reset(self, sel_ready, ready, written):
        """The statements of a device reset: every flag clear (``ready``, ``written`` and the
        selected queue's ``sel_ready``), queue 0 selected."""
        return [
            self.sel.eq(0), self.sel_ok.eq(1), sel_ready.eq(0),
            ready.eq(0), written.eq(0),
        ]


class BlockQueueFlags(wiring.Component):
    """The flags in a memory of 32-bit words (large N).

    Word ``g`` holds the ready flags of queues ``16g … 16g+15`` in bits 15:0 and their
    written flags in bits 31:16; ``fresh[g]`` says the word was written since the last device
    reset (otherwise it reads as 0). The memory is read without a clock (LUT RAM on ECP5,
    flip-flops on iCE40; 32 bits per 16 queues, per read port) at two addresses:

    * QueueSel's: a QueueSel write loads the new group's word into ``sel_word`` (a flag write
      of the same cycle forwarded), and every flag write updates it, so ``sel_word`` is always
      the selected group's current word. QueueReady and the row-written flag read it (from
      flip-flops: no memory read reaches the bus's read data), and a flag write is that word
      with one bit changed (a whole word write, no bit enables needed).
    * The device-side queue port's: the queue's flags are picked in the cycle ``q_index``
      comes and registered, so ``q_ready`` and ``q_written`` are flip-flops (as in the
      flip-flop version; they show the state before that cycle's write).
    """

    def __init__(self, queues):
        self._queues = queues
        super().__init__(QueueFlagsSignature(queues))

    def elaborate(self, platform):
        m = Module()
        bits = _index_bits(self._queues)
        lane_bits = (FLAG_GROUP - 1).bit_length()
        groups = max(1, (1 << bits) // FLAG_GROUP)

        def group(index):
            return index[lane_bits:] if groups > 1 else C(0, 1)

        def lane(index):
            return index[:lane_bits]

        # One memory of the words, read without a clock (LUT RAM on ECP5, flip-flops on
        # iCE40) at two addresses: the group QueueSel selects, and the device port's.
        m.submodules.flags = flags = memory.Memory(
            shape=unsigned(2 * FLAG_GROUP), depth=groups, init=[])
        write = flags.write_port()
        select_read = flags.read_port(domain="comb")
        copy_read = flags.read_port(domain="comb")
        fresh = Signal(groups)

        # ---- the selected queue, and its group's word in ``sel_word``
        with m.If(self.select):
            m.d.sync += [self.sel.eq(self.select_index), self.sel_ok.eq(self.select_ok)]
        sel_word = Signal(2 * FLAG_GROUP)
        ready_bits, written_bits = sel_word[:FLAG_GROUP], sel_word[FLAG_GROUP:]
        at = lane(self.sel)
        m.d.comb += [
            self.sel_ready.eq(self.sel_ok & ready_bits.bit_select(at, 1)),
            self.sel_written.eq(self.sel_ok & written_bits.bit_select(at, 1)),
        ]

        # ---- flag writes: the selected group's word with one bit changed
        new_ready = Signal(FLAG_GROUP)
        new_written = Signal(FLAG_GROUP)
        m.d.comb += [new_ready.eq(ready_bits), new_written.eq(written_bits)]
        with m.If(self.set_ready):
            m.d.comb += new_ready.bit_select(at, 1).eq(self.ready_value)
        with m.If(self.mark_written):
            m.d.comb += new_written.bit_select(at, 1).eq(1)
        m.d.comb += [
            write.addr.eq(group(self.sel)),
            write.data.eq(Cat(new_ready, new_written)),
            write.en.eq(self.set_ready | self.mark_written),
        ]
        with m.If(write.en):
            m.d.sync += [fresh.bit_select(group(self.sel), 1).eq(1), sel_word.eq(write.data)]
        # A new selection loads its group's word (this cycle's write forwarded: the
        # ``mark_written`` of a field write may come with a QueueSel write).
        m.d.comb += select_read.addr.eq(group(self.select_index))
        with m.If(self.select):
            same = write.en & (group(self.select_index) == group(self.sel))
            m.d.sync += sel_word.eq(
                Mux(same, write.data,
                    Mux(fresh.bit_select(group(self.select_index), 1), select_read.data, 0)))

        # ---- device-side port: the queue's flags from its read port, registered (zero if its word
        # is not fresh).
        m.d.comb += copy_read.addr.eq(group(self.q_index))
        q_fresh = fresh.bit_select(group(self.q_index), 1)
        q_word = copy_read.data
        m.d.sync += [
            self.q_ready.eq(q_fresh & q_word.bit_select(lane(self.q_index), 1)),
            self.q_written.eq(q_fresh & q_word.bit_select(FLAG_GROUP + lane(self.q_index), 1)),
        ]

        with m.If(self.reset):
            m.d.sync += [fresh.eq(0), self.sel.eq(0), self.sel_ok.eq(1), sel_word.eq(0)]
        return m


def queue_flags(queues, *, block=None):
    """The flags for N = ``queues``: in a memory of words when ``block`` is true, or (``None``) when
    N > :data:`BLOCK_FLAGS_QUEUES`."""
    if block is None:
        block = queues > BLOCK_FLAGS_QUEUES
    return (BlockQueueFlags if block else RegisterQueueFlags)(queues)
