"""Notifications (SPEC §6): the doorbell address decoder and the notification queue."""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .compare import below


__all__ = ["NotifyLayout", "DoorbellDecoder", "NotifyQueue"]


#: Payload of the notification stream (SPEC §6, §9): the queue (decoded from the doorbell
#: address, or taken from the data word), the word as written, and whether it is a
#: notification-data word (VIRTIO_F_NOTIFICATION_DATA negotiated).
NotifyLayout = data.StructLayout({"queue": 16, "data": 32, "has_data": 1})


class DoorbellDecoder(wiring.Component):
    """Combinational decode of a write's word address into a notification.

    QueueNotify (0x050) in every profile; in profiles with doorbells, ``notify_base + q *
    notify_multiplier`` for q < N, or the single doorbell at ``notify_base`` when the
    multiplier is 0. At QueueNotify and the single doorbell the queue comes from the data:
    bits 15:0 when notification data is negotiated, else the whole word. At a per-queue
    doorbell it comes from the address.

    Without a divider: with the multiplier ``m = 4 · 2^t · d`` (d odd), the word offset
    ``x`` from the base is a doorbell iff its low t bits are 0 and ``(x >> t) · d⁻¹ mod 2^w``
    is below N, which is then the queue (the product maps multiples of d to their quotient and
    everything else above ``(2^w - 1) / d``; d⁻¹ is the inverse of d modulo 2^w). For a
    power-of-two multiplier d = 1 and this is a shift.

    Members
    -------
    word, data, full, data_negotiated : In
        The write: word address, data, all four lanes enabled, NOTIFICATION_DATA negotiated.
    hit : Out
        The address is QueueNotify or a doorbell (the write is a notification or is dropped).
    valid : Out
        A full write for an existing queue: it becomes a notification for ``queue``.
    queue : Out(16)
    """

    def __init__(self, params, queue_notify_word):
        self._params = params
        self._queue_notify_word = queue_notify_word
        super().__init__({
            "word": In(params.addr_width - 2), "data": In(32), "full": In(1),
            "data_negotiated": In(1),
            "hit": Out(1), "valid": Out(1), "queue": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params
        n = p.queues
        queue_from_data = Mux(self.data_negotiated, self.data[:16], self.data)
        data_queue_ok = Mux(self.data_negotiated, below(self.data[:16], n), below(self.data, n))

        # Addresses where the queue comes from the data word, and per-queue doorbells.
        at_data_doorbell = self.word == self._queue_notify_word
        base = p.notify_base // 4
        stride = p.notify_multiplier // 4
        at_doorbell = C(0)
        doorbell_queue = C(0, 16)
        if p.has_doorbells and stride == 0:
            at_data_doorbell = at_data_doorbell | (self.word == base)
        elif p.has_doorbells:
            shift = (stride & -stride).bit_length() - 1
            odd = stride >> shift
            last = base + (n - 1) * stride
            offset = Signal(range(last - base + 1))
            span_bits = (last - base).bit_length()
            if base % (1 << span_bits) == 0:
                # The doorbells sit in an aligned block: the offset is the word's low bits and
                # the range check a compare of the high bits (no subtractor, no carry chain).
                low = self.word[:span_bits]
                m.d.comb += offset.eq(low)
                in_range = (self.word[span_bits:] == base >> span_bits) & \
                    (below(low, last - base + 1) if span_bits else C(1))
            else:
                m.d.comb += offset.eq(self.word - base)
                in_range = (self.word >= base) & (self.word <= last)
            width = max(1, ((n - 1) * odd).bit_length())
            quotient = Signal(width)
            m.d.comb += quotient.eq((offset >> shift) * pow(odd, -1, 1 << width))
            aligned = offset[:shift] == 0 if shift else C(1)
            at_doorbell = in_range & aligned & below(quotient, n)
            doorbell_queue = quotient

        with m.If(at_data_doorbell):
            m.d.comb += [
                self.hit.eq(1),
                self.valid.eq(self.full & data_queue_ok),
                self.queue.eq(queue_from_data),
            ]
        with m.Elif(at_doorbell):
            m.d.comb += [
                self.hit.eq(1),
                self.valid.eq(self.full),
                self.queue.eq(doorbell_queue),
            ]
        return m


class NotifyQueue(wiring.Component):
    """The notifications waiting for the device logic, in write order.

    ``depth`` 1 is a single register that can take a new notification in the cycle the device
    takes the old one; a larger depth is a FIFO. When nothing is held, a notification passes
    straight through: it is on ``o`` in the cycle it is written (and is held only if the device
    does not take it then), so the bus front-end's register stage adds no latency to
    ``notify_valid``. ``reset`` (a device reset) discards everything not yet taken.

    Members
    -------
    i : In(stream.Signature(NotifyLayout))
        ``i.ready`` is combinational from ``o.ready`` for depth 1.
    o : Out(stream.Signature(NotifyLayout))
        Combinational from ``i`` while nothing is held.
    reset : In(1)
    held : Out(1)
        Observation (for proofs): a notification is held (written and not yet taken).
    """

    def __init__(self, depth=1):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Notify FIFO depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(NotifyLayout)),
            "o": Out(stream.Signature(NotifyLayout)),
            "reset": In(1), "held": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        held = self.held                    # something is held (then it goes first)
        held_payload = Signal(NotifyLayout)
        store = Signal()                    # the incoming notification must be held
        m.d.comb += [
            self.o.valid.eq(held | self.i.valid),
            self.o.payload.eq(Mux(held, held_payload, self.i.payload)),
            store.eq(self.i.valid & self.i.ready & (held | ~self.o.ready)),
        ]
        if self._depth == 1:
            m.d.comb += self.i.ready.eq(~held | self.o.ready)
            with m.If(self.o.ready):
                m.d.sync += held.eq(0)
            with m.If(store):
                m.d.sync += [held.eq(1), held_payload.eq(self.i.payload)]
            with m.If(self.reset):
                m.d.sync += held.eq(0)
        else:
            fifo = SyncFIFO(width=NotifyLayout.size, depth=self._depth)
            m.submodules.fifo = ResetInserter(self.reset)(fifo)
            m.d.comb += [
                fifo.w_en.eq(store), fifo.w_data.eq(self.i.payload),
                self.i.ready.eq(fifo.w_rdy),
                held.eq(fifo.r_rdy), held_payload.eq(fifo.r_data),
                fifo.r_en.eq(self.o.ready),
            ]
        return m
