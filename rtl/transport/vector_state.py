"""Per-vector MSI state (docs/spec.md §7, §11): which vectors are pending, valid and masked, and
which one is issued next — the part of the interrupt controller that grows with N.

The interrupt controller (:class:`~virtio_mmio.transport.msi.InterruptController`) owns the
rules that do not depend on N: InterruptStatus and ``irq``, the MSI enable, the vector table
and its refusals, the message register. It drives a *vector-state store* through one interface,
:class:`VectorStateSignature`, which has two implementations, chosen by N
(:func:`vector_state`):

* :class:`RegisterVectorState` (N <= :data:`BLOCK_MSI_QUEUES`): a pending, a valid and a
  masked flip-flop per vector and a round robin over all of them, every cycle. The proofs
  run on this one.
* :class:`BlockVectorState` (larger N): the queue vectors' bits in block RAM, so logic does not
  grow with N but for a few flip-flops per word of 16 vectors.

Both give the docs/spec.md §7 behaviour and the latency and throughput the controller documents
(event to ``message.valid`` in 2 cycles, N+1 pending vectors sent in N+2 cycles, N+4 with the
block version); the block version differs otherwise only in the order it serves vectors of
different words (see its documentation).
"""

from amaranth.hdl import *
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..bus import below_constant, lowest_set, onehot_index, round_robin
from .queue_flags import FLAG_GROUP


__all__ = ["BLOCK_MSI_QUEUES", "VectorStateSignature", "RegisterVectorState",
           "BlockVectorState", "vector_state"]


#: Words of 16 vectors the block store's scanner chooses among in one clock; over more, the
#: choice takes two (see :class:`BlockVectorState`).
PICK_SPAN = 16

#: Largest N whose MSI state stays in flip-flops (measured with synth_ecp5: the flip-flop
#: version costs ~8.5 LUT4 per vector, the block version a fixed ~700).
BLOCK_MSI_QUEUES = 32


def _queue_bits(queues):
    return max(1, (queues - 1).bit_length())


class VectorStateSignature(wiring.Signature):
    """The per-vector state of N + 1 MSI vectors (vector 0: configuration changes; vector
    ``q + 1``: used buffers of queue ``q``), seen from the store (the interrupt controller
    drives the ``In`` members).

    Members
    -------
    config_event, used, used_queue : In
        This cycle's events: vector 0, and vector ``used_queue + 1`` when ``used`` (already
        limited to queues below N by the controller).
    update, update_in_window, mask, mask_value, command_vector : In
        The vector commands: an UPDATE of vector ``command_vector`` makes it valid when
        ``update_in_window`` (an UPDATE inside the MSI window), else invalid; MASK
        (``mask_value`` 1) / UNMASK (0) sets its mask (ignored by a store without masks).
    enabled : In(1)
        MSI is enabled (the controller's register, before this cycle's command).
    switch_on, wired : In
        MSI is being enabled this cycle: every pending vector is set from ``wired``,
        InterruptStatus after this cycle's ACK and events (bit 1 → vector 0, bit 0 → every
        queue vector).
    switch_off : In(1)
        MSI is being disabled this cycle: from the next cycle on nothing is pending.
    reset : In(1)
        Device reset: nothing pending, every vector invalid and unmasked.
    advance : In(1)
        The message register takes a vector this cycle (it is empty or being emptied).
    issue, vector : Out
        A vector is issued this cycle (only while ``enabled`` and ``advance``), and which one
        (the controller reads its table entry with it): it stops being pending, and its
        message is on the port from the next cycle on.
    cancel : Out(1)
        The vector issued in the cycle before is not sent after all: the controller drops its
        message (it was never on the port); the store keeps the vector pending.
        :class:`RegisterVectorState` never cancels.
    back_queue, back_config : Out(1)
        What switching off moves back into InterruptStatus (the controller reads them only
        then): a queue vector / vector 0 is pending, this cycle's events included (a store
        issues nothing in the cycle MSI is switched off). They must not depend on
        ``switch_off`` (the controller's InterruptStatus would loop through the store).
    pending, vector_valid, vector_masked, issued : Out(N + 1)
        Observation (for proofs): the pending, valid and masked vectors and the vector issued
        this cycle (one-hot). :class:`BlockVectorState` drives only ``issued``.
    """

    def __init__(self, queues):
        vectors = queues + 1
        super().__init__({
            "config_event": In(1), "used": In(1), "used_queue": In(_queue_bits(queues)),
            "update": In(1), "update_in_window": In(1), "mask": In(1), "mask_value": In(1),
            "command_vector": In(12),
            "enabled": In(1), "switch_on": In(1), "wired": In(2), "switch_off": In(1),
            "reset": In(1), "advance": In(1),
            "issue": Out(1), "vector": Out(range(vectors)), "cancel": Out(1),
            "back_queue": Out(1), "back_config": Out(1),
            "pending": Out(vectors), "vector_valid": Out(vectors),
            "vector_masked": Out(vectors), "issued": Out(vectors),
        })


class RegisterVectorState(wiring.Component):
    """The vector state in flip-flops (small N).

    Each vector has a pending, a valid and (with ``masks``) a masked flip-flop. Every cycle
    the sendable vectors (:meth:`_sendable`) go into a round robin starting after the last one
    served, and the one it picks is issued — unless MSI is being switched off: what is pending
    then goes back to InterruptStatus without waiting for the round robin's choice.

    Pipeline: an event in cycle t sets its pending bit at the edge ending t; in t+1 the vector
    is issued (the table is read), in t+2 its message is on the port. One vector per cycle
    is issued while the port takes them, so N+1 pending vectors leave in N+2 cycles.
    """

    def __init__(self, queues, *, masks=False):
        self._queues = queues
        self._masks = masks
        super().__init__(VectorStateSignature(queues))

    # The rules, one method each (the proofs' mutation tests replace them).

    def _next_pending(self, pending, issued, events):
        """The pending vectors after a cycle while enabled: the one issued is served, this
        cycle's events are pending (an event on the vector being issued stays pending)."""
        return (pending & ~issued) | events

    def _sendable(self, pending, valid, masked):
        """The vectors that may be issued: pending, valid and not masked."""
        return pending & valid & ~masked

    def _mask(self, pending, masked, vector, value):
        """The statements of a MASK (``value`` 1) or UNMASK (0) of ``vector``: only its mask
        changes; a pending event stays pending and is sent when unmasked."""
        return [masked.bit_select(vector, 1).eq(value)]

    def _carried_back(self, pending, events):
        """``(back_queue, back_config)``: a queue vector / vector 0 is pending, this cycle's
        events included."""
        still = pending | events
        return still[1:] != 0, still[0]

    def elaborate(self, platform):
        m = Module()
        n = self._queues
        vectors = n + 1

        pending = Signal(vectors)
        valid = Signal(vectors)
        masked = Signal(vectors)

        # Events as vector bits: vector 0 for config, q + 1 for queue q.
        event_vectors = Signal(vectors)
        m.d.comb += event_vectors.eq(Cat(
            self.config_event, Mux(self.used, C(1, 1) << self.used_queue, 0)[:n]))

        back_queue, back_config = self._carried_back(pending, event_vectors)
        m.d.comb += [self.back_queue.eq(back_queue), self.back_config.eq(back_config)]

        # ---- round robin over the pending, valid and unmasked vectors
        ready_vectors = self._sendable(pending, valid, masked)
        # Nothing is issued in a cycle MSI is switched off.
        issue = self.enabled & (ready_vectors != 0) & self.advance & ~self.switch_off
        lowest, pick = round_robin(m, ready_vectors, issue, self.reset)   # lowest: one-hot
        issued = Mux(issue, lowest, 0)
        m.d.comb += [self.issue.eq(issue), self.vector.eq(pick), self.cancel.eq(0)]
        m.d.comb += [self.pending.eq(pending), self.vector_valid.eq(valid),
                     self.vector_masked.eq(masked), self.issued.eq(issued)]

        # ---- pending vectors
        queue_vectors = C((1 << vectors) - 2, vectors)      # every vector but 0
        with m.If(self.enabled):
            with m.If(self.switch_off):
                # Off: pending vectors (and this cycle's events) went back to InterruptStatus.
                m.d.sync += pending.eq(0)
            with m.Else():
                m.d.sync += pending.eq(self._next_pending(pending, issued, event_vectors))
        with m.Elif(self.switch_on):
            # On: InterruptStatus (and this cycle's events) become pending vectors.
            m.d.sync += pending.eq(Mux(self.wired[1], 1, 0) |
                                   Mux(self.wired[0], queue_vectors, 0))

        with m.If(self.update):
            m.d.sync += valid.bit_select(self.command_vector, 1).eq(self.update_in_window)
        if self._masks:
            with m.If(self.mask):
                m.d.sync += self._mask(pending, masked, self.command_vector, self.mask_value)

        with m.If(self.reset):
            m.d.sync += [pending.eq(0), valid.eq(0), masked.eq(0)]
        return m


class BlockVectorState(wiring.Component):
    """The vector state in block RAM (large N), so that logic does not grow with N.

    Vector 0 (configuration changes) keeps its flip-flops. The queue vectors ``q + 1`` live in
    words of 16 (:data:`~virtio_mmio.transport.queue_flags.FLAG_GROUP`) in three small
    memories:

    * ``S`` and ``C``: a queue vector is pending when its ``S`` bit differs from its ``C`` bit
      (each further XORed with the word's ``invert`` flag). Events flip ``S`` (only the event
      path writes it), issuing flips ``C`` (only the scanner writes it), so each memory has one
      writer and a pending bit is never read-modified-written by two parties at once.
    * ``V``: the vector is valid (written by UPDATE) and, with masks, masked (MASK/UNMASK; the
      masked bits are the upper half of the word). A vector is sent only while valid and
      unmasked. The commands read-modify-write a copy of ``V`` read without a clock (LUT RAM
      on ECP5), written with it, so no block-RAM read leads into ``V``'s write data.

    Each word of each memory has a *fresh* flip-flop: a word not written since the last device
    reset (for ``S``/``C`` also since MSI was last switched off) reads as 0, so reset and
    disable still clear every vector in one cycle, and enabling with InterruptStatus bit 0 set
    makes every queue vector pending in one cycle by setting every word's ``invert`` flag.

    Pipeline
    --------
    * Event (``used``) in cycle t (stage 1): its words of ``S``, ``C`` and ``V`` are read, its
      lane registered one-hot with its words' fresh flags. In t+1 (stage 2) the words are
      registered; if no queue vector is pending (known from flip-flops: ``count`` and the
      stages), the event's vector cannot be pending either and the *fast path* issues it at
      once, its table entry read (``message.valid`` in t+2, as with the flip-flop version).
      In t+2 (stage 3), from flip-flops: if the vector turned out invalid or masked, the fast
      path's message is cancelled (``cancel``: it never reaches the port); the event is
      merged if its vector was pending when it came, else (not sent) its ``S`` bit flips and
      its word gets a *hint* flip-flop set. Stage 3 writes its ``S`` word back every time;
      stage 2 registers that write beside the word it read (which missed it), and stage 3
      takes the later one. So block-RAM data go only into flip-flops (``C`` and ``V`` through
      their fresh gates); which table entry is read never depends on them.
    * Scanner: picks a hinted word round-robin (over more than :data:`PICK_SPAN` words in two
      clocks), reads its ``S``, ``C``, ``V`` words into a landing register *L* (block-RAM data
      straight into flip-flops), and keeps the pending-and-valid bits in one of two slots (the
      second is filled while the first is being issued, so full words leave one vector per
      clock). Each issue flips the ``C`` bit. A hint is also set by an UPDATE, so a pending
      vector that was invalid is looked at again. Enabling MSI with InterruptStatus bit 0 set
      picks word 0 at once.
    * A count of pending queue vectors answers "is any pending" when MSI is switched off.

    Differences from the flip-flop version, all within docs/spec.md §7: messages of vectors in
    different words are issued in word order rather than strictly round-robin per vector (every
    word is visited in turn, so none starves); a fast-path try that
    is cancelled costs a cycle in which nothing else is issued (and, if the port is not ready
    in the cycle it is cancelled, that cycle too); the observation members
    ``pending``, ``vector_valid`` and ``vector_masked`` read 0 (proofs use the flip-flop
    version); ``issued`` is kept (tests use it; it leaves out a try that will be cancelled). A
    command that stops a vector (an UPDATE
    refused by the MSI window, a MASK) reaches ``V`` a clock later than in the flip-flop
    version; in that clock the vector is already left out of the choice, so as there it is
    never sent after the command.
    """

    def __init__(self, queues, *, masks=False):
        self._queues = queues
        self._masks = masks
        super().__init__(VectorStateSignature(queues))

    def elaborate(self, platform):
        m = Module()
        n = self._queues
        W = FLAG_GROUP
        lane_bits = (W - 1).bit_length()
        groups = (n + W - 1) // W
        gbits = max(1, (groups - 1).bit_length())
        last_mask = (1 << (n - (groups - 1) * W)) - 1        # queue vectors of the last word

        def group(q):
            return q[lane_bits:lane_bits + gbits] if groups > 1 else C(0, 1)

        def lane(q):
            return q[:lane_bits]

        def exists(g):
            """The word's bits that are queue vectors (all but in the last word)."""
            return Mux(g == groups - 1, last_mask, (1 << W) - 1) if groups > 1 \
                else C(last_mask, W)

        enabled, switch_on, switch_off, wired = \
            self.enabled, self.switch_on, self.switch_off, self.wired
        used = self.used

        # ---- the three bit memories and their per-word flags
        def bits_memory(name, readers, width=W):
            # Every word address exists: an ignored event (queue >= N) is still read for.
            mem = memory.Memory(shape=unsigned(width), depth=1 << gbits if groups > 1 else 1,
                                init=[],
                                attrs={"ram_style": "block"})
            m.submodules[name] = mem
            write = mem.write_port()
            return write, [mem.read_port(transparent_for=(write,)) for _ in range(readers)]

        s_write, (s_event, s_scan) = bits_memory("pending_set", 2)
        c_write, (c_event, c_scan) = bits_memory("pending_clear", 2)
        # V: the valid bits, and with masks the masked bits above them.
        v_width = 2 * W if self._masks else W
        v_write, (v_event, v_scan) = bits_memory("valid", 2, v_width)
        # A copy of V read without a clock (LUT RAM on ECP5) for the commands' read-modify-
        # write, written with V: the word of the clock before is in it, so no block RAM's
        # clock-to-out and no transparency logic lead into V's write data.
        m.submodules.valid_update = v_copy = memory.Memory(
            shape=unsigned(v_width), depth=1 << gbits if groups > 1 else 1, init=[])
        v_copy_write = v_copy.write_port()
        v_update = v_copy.read_port(domain="comb")
        s_fresh = Signal(groups)
        c_fresh = Signal(groups)
        v_fresh = Signal(groups)
        invert = Signal(groups)
        hint = Signal(groups)
        count = Signal(range(n + 1))        # pending queue vectors (but ``toggled``)
        toggled = Signal()                  # an event made a vector pending last cycle

        upd_valid = Signal()            # a V command's stage (see below)
        upd_at = Signal(_queue_bits(n))
        a_group = Signal(gbits)         # slot A's word (see the scanner)
        a_group_up = Signal(gbits + 1)  # a_group + 1

        # ---- vector 0
        pending0 = Signal()
        valid0 = Signal()
        masked0 = Signal()

        # ---- event path (see the class documentation): stage 1 reads the event's words and
        # registers what stage 2 needs from flip-flops; stage 2 may try the fast path and
        # registers the words; stage 3 decides from flip-flops alone.
        clearing = (enabled & switch_off) | self.reset      # pending state cleared this edge
        event_q = self.used_queue
        g1 = group(event_q)
        for port in (s_event, c_event, v_event):
            m.d.comb += port.addr.eq(g1)
        e2_valid = Signal()
        e2_q = Signal.like(event_q)
        e2_vector = Signal(range(n + 1))        # its vector, for the table read
        e2_oh = Signal(W)                       # its lane, one-hot
        e2_sf, e2_cf, e2_vf = Signal(), Signal(), Signal()   # its words are fresh
        e2_inv = Signal()
        e3_valid = Signal()
        e3_q = Signal.like(event_q)
        e3_oh = Signal(W)
        e3_inv = Signal()
        e3_s_word = Signal(W)                   # the S word as it is now (before stage 3)
        e3_c_sel = Signal(W)                    # the C bit of the event's lane
        e3_v_sel = Signal(W)                    # the valid bit of the lane
        e3_m_sel = Signal(W)                    # the masked bit of the lane
        e3_fast = Signal()                      # the fast path issued the event's vector
        issue_a = Signal()
        s_written = Signal()                    # stage 3 writes its S word this cycle
        m.d.comb += s_written.eq(e3_valid)
        # The fresh flags as they are after this edge (the words read now include its writes).
        m.d.sync += [
            e2_valid.eq(used & enabled & ~switch_off & ~self.reset),
            e2_q.eq(event_q), e2_vector.eq(event_q + 1),
            e2_oh.eq(C(1, W) << lane(event_q)),
            e2_sf.eq(s_fresh.bit_select(g1, 1) | (s_written & (group(e3_q) == g1))),
            e2_cf.eq(c_fresh.bit_select(g1, 1) | (issue_a & (a_group == g1))),
            e2_vf.eq(v_fresh.bit_select(g1, 1) | (upd_valid & (group(upd_at) == g1))),
            e2_inv.eq(invert.bit_select(g1, 1)),
        ]
        e2_g, e3_g = group(e2_q), group(e3_q)

        # ---- V commands (UPDATE; MASK/UNMASK): vector 0 at once; a queue vector reads its
        # V word, writes in t+1. ``upd_ok``: the vector may be sent after the command as far
        # as this command goes (an UPDATE inside the window, an UNMASK).
        upd_q = Signal(_queue_bits(n))
        m.d.comb += upd_q.eq(self.command_vector - 1)
        mask_cmd = self.mask if self._masks else C(0)
        upd_ok = Signal()
        # What the write does, registered with the command: the bit written (one-hot: the
        # valid bit, or with a MASK or UNMASK the masked bit) and its value; ``stopping``:
        # the command's lane one-hot if it stops its vector (else 0).
        upd_bit = Signal(v_width)
        upd_value = Signal()
        stopping = Signal(W)
        upd_next = (self.update | mask_cmd) & (self.command_vector != 0) & ~self.reset
        upd_ok_next = Mux(mask_cmd, ~self.mask_value, self.update_in_window)
        m.d.sync += [upd_valid.eq(upd_next), upd_ok.eq(upd_ok_next),
                     stopping.eq(Mux(upd_next & ~upd_ok_next, C(1, W) << lane(upd_q), 0)),
                     upd_bit.eq(C(1, v_width) << Mux(mask_cmd, W, 0) + lane(upd_q)),
                     upd_value.eq(Mux(mask_cmd, self.mask_value, self.update_in_window)),
                     upd_at.eq(upd_q)]
        new_v = Signal(v_width)
        m.d.comb += new_v.eq(Mux(v_fresh.bit_select(group(upd_at), 1), v_update.data, 0) &
                             ~upd_bit | Mux(upd_value, upd_bit, 0))
        m.d.comb += v_update.addr.eq(group(upd_at))
        for port in (v_write, v_copy_write):
            m.d.comb += [port.addr.eq(group(upd_at)), port.data.eq(new_v),
                         port.en.eq(upd_valid)]
        with m.If(self.update & (self.command_vector == 0)):
            m.d.sync += valid0.eq(self.update_in_window)
        with m.If(mask_cmd & (self.command_vector == 0)):
            m.d.sync += masked0.eq(self.mask_value)

        # ---- scanner slots: A is issued from, B waits behind it, L holds a word as read
        a_bits, b_bits = Signal(W), Signal(W)
        b_group = Signal(gbits)
        a_c, b_c = Signal(W), Signal(W)           # the word's C bits (only the scanner flips C)
        loading = Signal()                        # a word read is in flight
        load_group = Signal(gbits)
        # L: the loaded word's S, C and V words straight from the block RAMs (no logic after
        # their data), with the word's flags as they were then and the lanes that commands
        # have stopped since (``l_stop``); the pending-and-sendable bits are formed from these
        # flip-flops as L moves into A or B.
        l_valid = Signal()
        l_group = Signal(gbits)
        l_s, l_c, l_v = Signal(W), Signal(W), Signal(v_width)
        l_sf, l_cf, l_vf, l_inv = Signal(), Signal(), Signal(), Signal()
        l_stop = Signal(W)

        # The next word to load, chosen ahead (a registered round robin over the hinted
        # words, after the one loaded last): ``pick_group`` when ``picked``, kept until it is
        # loaded (its hint stays set until then). Left out of the choice: the word in slot A
        # (being issued: its C bits change) and the word picked already. A word is in at most
        # one of A, B, L and the load in flight (so no slot's C bits go stale): a pick that is
        # in one of them waits until A is done with it.
        pick_group = Signal(gbits)
        picked = Signal()
        a_empty, b_full = Signal(), Signal()
        m.d.comb += [a_empty.eq(a_bits == 0), b_full.eq(b_bits != 0)]
        a_busy = Mux(~a_empty, C(1, groups) << a_group, 0)

        def holds(full, g):
            return full & (g == pick_group)
        # A load may start when L is empty or surely moves this cycle (B is empty), so the
        # word lands into an empty L; all from flip-flops.
        start_load = (enabled & ~switch_off & ~loading & (~l_valid | ~b_full) & picked &
                      ~holds(~a_empty, a_group) & ~holds(b_full, b_group) &
                      ~holds(l_valid, l_group))
        candidates = Signal(groups)
        m.d.comb += candidates.eq(hint & ~a_busy & ~Mux(picked, C(1, groups) << pick_group, 0))
        above = Signal(groups, init=(1 << groups) - 1)      # the words after the last load
        # The lowest candidate above the last load, else the lowest of all: both found at
        # once, each as a tree (no carry chain or wide OR in front of the choice). Over more
        # than :data:`PICK_SPAN` words in two clocks: each span's lowest candidate is
        # registered, then the lowest span with one is taken. A span's entry is then a clock
        # old: one that names the picked word (being loaded, or kept) is left out, and a word
        # hinted meanwhile waits a clock.
        if groups <= PICK_SPAN:
            any_above, index_above = lowest_set(candidates & above)
            any_candidate, index_all = lowest_set(candidates)
        else:
            span_bits = (PICK_SPAN - 1).bit_length()

            def in_two_clocks(bits):
                entries = []
                for k in range(0, groups, PICK_SPAN):
                    found, where = Signal(), Signal(span_bits)
                    part_any, part_index = lowest_set(bits[k:k + PICK_SPAN])
                    m.d.sync += [found.eq(part_any), where.eq(part_index)]
                    word = Cat(where, C(k // PICK_SPAN, gbits - span_bits))
                    entries.append((found & ~(picked & (word == pick_group)), word))
                any_span, span = lowest_set(Cat(*(found for found, _ in entries)))
                return any_span, Array(word for _, word in entries)[span]
            any_above, index_above = in_two_clocks(candidates & above)
            any_candidate, index_all = in_two_clocks(candidates)
        with m.If(~picked | start_load):
            m.d.sync += [pick_group.eq(Mux(any_above, index_above, index_all)),
                         picked.eq(any_candidate)]
        # Enabling with InterruptStatus bit 0 hints every word: word 0 is picked at once.
        with m.If(~enabled & switch_on & wired[0]):
            m.d.sync += [pick_group.eq(0), picked.eq(1)]
        with m.If(start_load):
            # (Word i is after the one loaded when that one's index is below i.)
            m.d.sync += above.eq(Cat(*(below_constant(pick_group, i) for i in range(groups))))
        with m.If(self.reset):
            m.d.sync += above.eq(above.init)
        for port in (s_scan, c_scan, v_scan):
            m.d.comb += port.addr.eq(pick_group)
        m.d.sync += loading.eq(start_load & ~self.reset)
        with m.If(start_load):
            m.d.sync += load_group.eq(pick_group)
        with m.If(loading):
            m.d.sync += [l_group.eq(load_group),
                         l_s.eq(s_scan.data), l_c.eq(c_scan.data), l_v.eq(v_scan.data),
                         l_sf.eq(s_fresh.bit_select(load_group, 1)),
                         l_cf.eq(c_fresh.bit_select(load_group, 1)),
                         l_vf.eq(v_fresh.bit_select(load_group, 1)),
                         l_inv.eq(invert.bit_select(load_group, 1))]
        landed_c = Mux(l_cf, l_c, 0)
        l_v_word = Mux(l_vf, l_v, 0)
        landed_bits = (((Mux(l_sf, l_s, 0) ^ landed_c) ^ Mux(l_inv, exists(l_group), 0)) &
                       (l_v_word[:W] & ~l_v_word[W:] if self._masks else l_v_word) & ~l_stop)

        # ---- issue: vector 0 and the queue vectors take turns; the fast path when quiet
        turn0 = Signal()                           # vector 0 goes first when both wait
        # A command that stops a queue vector (a refused UPDATE, a MASK) reaches V and the
        # slots at the end of its stage cycle; in that cycle slot A and the fast path already
        # do not issue it, so it is never sent after the command.
        # Slot A offers its lowest vector; if a command stops that one this cycle, A issues
        # nothing (the vector leaves the slot at the edge). So the table address depends on
        # A's flip-flops alone: ``a_group_up`` is ``a_group + 1`` kept beside it, and the
        # index of the lane above the lowest is the vector's low bits (vector = 16 g + lane + 1).
        # A's lowest vector is a flip-flop (one-hot) kept beside ``a_bits``, so no carry chain
        # leads into the issue decision.
        a_lowest = Signal(W)
        a_stopped = (group(upd_at) == a_group) & ((stopping & a_lowest) != 0)
        a_vector = Cat(onehot_index(Cat(C(0, 1), a_lowest)[:W]),
                       Mux(a_lowest[W - 1], a_group_up, a_group))
        want0 = pending0 & valid0 & ~masked0
        want_a = ~a_empty
        # Stage 2 of the event path: the fast path. With no queue vector pending (``count``,
        # ``toggled`` and stage 3 say so from flip-flops), the event's vector is not pending
        # either: it is *tried*, its table entry read, without the block-RAM words. Whether it
        # is sent (its V word) is known in stage 3, which cancels the message if it is not.
        quiet = ((count == 0) & ~toggled &
                 ~(e3_valid & (~e3_fast | (e3_q == e2_q))))
        try_fast = e2_valid & quiet & ~(upd_valid & ~upd_ok & (upd_at == e2_q))
        take0 = want0 & (turn0 | ~(want_a | try_fast))
        take_a = ~take0 & want_a
        take_fast = ~take0 & ~want_a & try_fast
        # Nothing is issued in the cycle MSI is switched off (as in the flip-flop version), so
        # ``back_queue`` needs neither the words nor this cycle's issue.
        can = enabled & self.advance & ~switch_off
        issue0 = can & take0
        m.d.comb += issue_a.eq(can & take_a & ~a_stopped)
        issue_fast = can & take_fast
        issue = issue0 | issue_a | issue_fast
        with m.If(issue0):
            m.d.sync += turn0.eq(0)
        with m.Elif(issue):
            m.d.sync += turn0.eq(1)

        vector = Signal(range(n + 1))
        with m.If(take_a):
            m.d.comb += vector.eq(a_vector)
        with m.Elif(take_fast):
            m.d.comb += vector.eq(e2_vector)
        m.d.comb += [self.issue.eq(issue), self.vector.eq(vector)]

        # Stage 2 registers the words, C's and V's bits gated by their words' fresh flags. S
        # is registered as read, with its fresh flag and stage 3's write of this cycle (which
        # the read missed); stage 3 chooses among them from flip-flops, so the block RAM's
        # read goes straight into flip-flops.
        s_new = Signal(W)                       # stage 3's S word (written this cycle)
        words = s_event.data, c_event.data, v_event.data
        e3_s_read, e3_s_written = Signal(W), Signal(W)
        e3_sf, e3_s_fwd = Signal(), Signal()
        m.d.comb += e3_s_word.eq(Mux(e3_s_fwd, e3_s_written, Mux(e3_sf, e3_s_read, 0)))
        lane_of = Mux(e2_vf, e2_oh, 0)
        m.d.sync += [
            e3_valid.eq(e2_valid & ~clearing),
            e3_q.eq(e2_q), e3_oh.eq(e2_oh), e3_inv.eq(e2_inv), e3_fast.eq(issue_fast),
            e3_s_read.eq(words[0]), e3_sf.eq(e2_sf), e3_s_written.eq(s_new),
            e3_s_fwd.eq(s_written & (e3_g == e2_g)),
            e3_c_sel.eq(words[1] & Mux(e2_cf, e2_oh, 0)),
            e3_v_sel.eq(words[2][:W] & lane_of),
        ]
        if self._masks:
            m.d.sync += e3_m_sel.eq(words[2][W:] & lane_of)
        # Observation: what is issued and not cancelled (the V word is read here for it
        # alone; synthesis keeps none of it).
        v_now = (words[2][:W] & lane_of) != 0
        if self._masks:
            v_now &= (words[2][W:] & lane_of) == 0
        sent_now = issue0 | issue_a | (issue_fast & v_now)
        m.d.comb += self.issued.eq(Mux(sent_now, (C(1, n + 1) << vector)[:n + 1], 0))

        # Stage 3: the event was merged if its vector was pending when it came (S as now,
        # C and the invert flag as read), sent if the fast path took it and it is valid and
        # unmasked; else its S bit flips and its word is hinted.
        pend3 = ((e3_s_word & e3_oh) != 0) ^ (e3_c_sel != 0) ^ e3_inv
        v_ok3 = (e3_v_sel != 0) & ~(e3_m_sel != 0)
        toggle_s = e3_valid & ~pend3 & ~(e3_fast & v_ok3)
        m.d.comb += self.cancel.eq(e3_fast & ~v_ok3)

        # ---- C writes (issue from A), S writes (new pending event), hints
        # (The word written is A's C bits with the lowest flipped, whether or not A issues:
        # the issue decision only enables the write.)
        a_c_flipped = Signal(W)
        a_c_next = Signal(W)
        m.d.comb += [a_c_flipped.eq(a_c ^ a_lowest),
                     a_c_next.eq(Mux(issue_a, a_c_flipped, a_c))]
        m.d.comb += [c_write.addr.eq(a_group), c_write.data.eq(a_c_flipped),
                     c_write.en.eq(issue_a)]
        with m.If(issue_a):
            m.d.sync += c_fresh.bit_select(a_group, 1).eq(1)
        # Stage 3 writes its S word back whether or not its bit flips (the word is fresh
        # from then on).
        m.d.comb += s_new.eq(e3_s_word ^ Mux(toggle_s, e3_oh, 0))
        m.d.comb += [s_write.addr.eq(e3_g), s_write.data.eq(s_new), s_write.en.eq(s_written)]
        with m.If(s_written):
            m.d.sync += s_fresh.bit_select(e3_g, 1).eq(1)

        with m.If(start_load):
            m.d.sync += hint.bit_select(pick_group, 1).eq(0)
        with m.If(toggle_s):
            m.d.sync += hint.bit_select(e3_g, 1).eq(1)
        # (Only while enabled: nothing is pending otherwise, and a hint left over would keep
        # the scanner busy, so the first events after an enable would miss the fast path.)
        with m.If(upd_valid & upd_ok & enabled):
            m.d.sync += hint.bit_select(group(upd_at), 1).eq(1)

        # ---- slots: A loses its issued bit; when A empties, B (or L) moves in
        # A refused UPDATE or a MASK takes its vector out of the slots (it stays pending).
        def drop_refused(bits, g):
            return bits & ~Mux(group(upd_at) == g, stopping, 0)

        def lowest(bits):
            return bits & (~bits + 1)

        # A with and without its lowest vector, each with its own lowest found from
        # flip-flops; the issue decision (late) only chooses.
        a_kept, a_less = Signal(W), Signal(W)
        m.d.comb += [a_kept.eq(drop_refused(a_bits, a_group)),
                     a_less.eq(drop_refused(a_bits & ~a_lowest, a_group))]
        m.d.sync += [a_bits.eq(Mux(issue_a, a_less, a_kept)),
                     a_lowest.eq(Mux(issue_a, lowest(a_less), lowest(a_kept))),
                     a_c.eq(a_c_next), b_bits.eq(drop_refused(b_bits, b_group))]

        def load_a(bits, g, c):
            word = drop_refused(bits, g)
            return [a_bits.eq(word), a_lowest.eq(lowest(word)), a_group.eq(g),
                    a_group_up.eq(g + 1), a_c.eq(c)]
        # L moves into A if A takes a word and B is empty, else into B if B is empty or moves
        # into A; the issue decision (late) only chooses among flip-flops: A takes a word when
        # it is empty, or holds one vector and issues it.
        a_single = Signal()
        m.d.comb += a_single.eq(~a_empty & ((a_bits & ~a_lowest) == 0))
        a_take = a_empty | (a_single & issue_a)
        l_moves = l_valid & (a_take | ~b_full)
        l_into_b = [b_bits.eq(drop_refused(landed_bits, l_group)),
                    b_group.eq(l_group), b_c.eq(landed_c)]
        with m.If(a_take):
            with m.If(b_full):
                m.d.sync += load_a(b_bits, b_group, b_c)
                m.d.sync += b_bits.eq(0)
                with m.If(l_valid):
                    m.d.sync += l_into_b
            with m.Elif(l_valid):
                m.d.sync += load_a(landed_bits, l_group, landed_c)
        with m.Elif(l_valid & ~b_full):
            m.d.sync += l_into_b
        # L: filled by the load (it is empty then, see ``start_load``); commands that stop a
        # vector of its word while it waits are kept in ``l_stop``.
        m.d.sync += l_valid.eq((loading | (l_valid & ~l_moves)) & ~self.reset)
        with m.If(loading):
            m.d.sync += l_stop.eq(Mux(group(upd_at) == load_group, stopping, 0))
        with m.Else():
            m.d.sync += l_stop.eq(l_stop | Mux(group(upd_at) == l_group, stopping, 0))

        # ---- count, enable transitions. ``count`` takes an S toggle a cycle late (from
        # ``toggled``), so no adder follows the block-RAM data.
        count_next = Signal.like(count)
        # (Both sums from flip-flops; the issue decision, late, only chooses.)
        count_kept, count_less = Signal.like(count), Signal.like(count)
        m.d.comb += [count_kept.eq(count + toggled), count_less.eq(count + toggled - 1),
                     count_next.eq(Mux(issue_a, count_less, count_kept))]
        m.d.sync += toggled.eq(toggle_s)
        pending0_next = (pending0 & ~issue0) | self.config_event
        # Pending after a cycle that issues nothing: counted ones, stage 3's toggle, and the
        # events of this cycle and of stage 2 (pending already, or about to be).
        m.d.comb += [self.back_queue.eq((count != 0) | toggled | toggle_s | used | e2_valid),
                     self.back_config.eq(pending0 | self.config_event)]
        with m.If(enabled):
            with m.If(switch_off):
                m.d.sync += [pending0.eq(0), count.eq(0), toggled.eq(0)]
                self._clear_pending(m, s_fresh, c_fresh, invert, hint,
                                    a_bits, a_lowest, b_bits, loading, l_valid, picked)
            with m.Else():
                m.d.sync += [pending0.eq(pending0_next), count.eq(count_next)]
        with m.Elif(switch_on):
            m.d.sync += pending0.eq(wired[1])
            with m.If(wired[0]):
                m.d.sync += [invert.eq((1 << groups) - 1), hint.eq((1 << groups) - 1),
                             count.eq(n)]

        with m.If(self.reset):
            m.d.sync += [pending0.eq(0), valid0.eq(0), masked0.eq(0),
                         count.eq(0), toggled.eq(0), v_fresh.eq(0), turn0.eq(0)]
            self._clear_pending(m, s_fresh, c_fresh, invert, hint, a_bits, a_lowest, b_bits,
                                loading, l_valid, picked)
        # V words: written by UPDATE (after the reset clause for the fresh flag would be
        # wrong: a reset in the write's cycle must leave the vector invalid).
        with m.If(upd_valid & ~self.reset):
            m.d.sync += v_fresh.bit_select(group(upd_at), 1).eq(1)
        return m

    @staticmethod
    def _clear_pending(m, s_fresh, c_fresh, invert, hint, a_bits, a_lowest, b_bits, loading,
                       l_valid, picked):
        m.d.sync += [s_fresh.eq(0), c_fresh.eq(0), invert.eq(0), hint.eq(0),
                     a_bits.eq(0), a_lowest.eq(0), b_bits.eq(0), loading.eq(0), l_valid.eq(0),
                     picked.eq(0)]


def vector_state(queues, *, masks=False, block=None):
    """The vector-state store for N = ``queues`` (with per-vector masks when ``masks``): in
    block RAM when ``block`` is true, or (``None``) when N > :data:`BLOCK_MSI_QUEUES`."""
    if block is None:
        block = queues > BLOCK_MSI_QUEUES
    return (BlockVectorState if block else RegisterVectorState)(queues, masks=masks)
