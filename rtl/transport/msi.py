"""Interrupts (docs/spec.md §7): InterruptStatus for INTx, the MSI vector table and message
generator. The MSI manager ports are the bus layer's write managers (:mod:`virtio_mmio.bus`).

:class:`InterruptController` writes the rules that do not depend on N once: InterruptStatus,
``irq`` and the MSI enable, the vector table and its refusals, the message register. What
grows with N — which vectors are pending, valid and masked, and which one is issued next — is
a vector-state store behind one interface (:mod:`virtio_mmio.transport.vector_state`), in
flip-flops for small N and in block RAM beyond
:data:`~virtio_mmio.transport.vector_state.BLOCK_MSI_QUEUES` queues.
"""

from amaranth.hdl import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..bus import WriteMessage
from ..compare import below
from .vector_state import vector_state


__all__ = ["MsiMessage", "MsiCommand", "InterruptController", "TABLE_IN_FLIP_FLOPS"]


#: With the request stage (``params.pipeline``), a vector table of at most this many vectors
#: is in flip-flops: a block RAM's clock-to-out (5.8 ns on ECP5) is then not on the MSI port.
TABLE_IN_FLIP_FLOPS = 4


#: One MSI message: a 32-bit write of ``data`` to ``address``, as the bus layer's write
#: managers send it.
MsiMessage = WriteMessage


class MsiCommand(wiring.Signature):
    """Decoded MSI register writes, from the register core to the interrupt controller.

    ``update`` pulses for an UPDATE of vector ``vector`` (0..N) with the staged ``address`` and
    ``data``; ``enable`` pulses with ``enable_value`` for ENABLE or a MsiStatus write; ``mask``
    pulses with ``mask_value`` (1 MASK, 0 UNMASK) for vector ``vector`` (controllers with
    per-vector masks); ``refuse`` pulses for a command the profile refuses (counted in
    ``rejected``). ``vector`` and ``mask_value`` may change in any cycle (they follow the
    write data); they count only with their pulses."""

    def __init__(self):
        super().__init__({
            "update": Out(1), "vector": Out(12), "address": Out(64), "data": Out(32),
            "enable": Out(1), "enable_value": Out(1),
            "mask": Out(1), "mask_value": Out(1), "refuse": Out(1),
        })


class InterruptController(wiring.Component):
    """InterruptStatus, the MSI vector table and the message generator (docs/spec.md §7).

    Parameters
    ----------
    params : EndpointParams
    msi : bool
        Whether the profile has MSI. Without it, only InterruptStatus and ``irq`` exist and
        enable commands are ignored.
    masks : bool
        Per-vector masks (MASK/UNMASK commands): a masked vector is not sent; its events stay
        pending and it is sent when unmasked. Device reset unmasks every vector.
    keeps_status : bool
        InterruptStatus goes on recording events (and InterruptACK clearing them) while MSI is
        enabled; ``irq`` stays low meanwhile. Otherwise InterruptStatus is 0 while enabled.
    block : bool or None
        The per-vector state (:func:`~virtio_mmio.transport.vector_state.vector_state`): in
        block RAM (``True``), in flip-flops (``False``), or chosen by N (``None``: block RAM
        beyond :data:`~virtio_mmio.transport.vector_state.BLOCK_MSI_QUEUES` queues).

    Members
    -------
    used_valid, used_queue, config_event : In
        Events, accepted every cycle: vector ``used_queue + 1`` (queues >= N ignored) and
        vector 0.
    ack : In(2)
        InterruptACK bits written this cycle (ignored while MSI is enabled, unless
        ``keeps_status``).
    command : In(MsiCommand)
    reset : In(1)
        Device reset: InterruptStatus, MSI enable, every vector (invalid) and every pending
        event cleared. A message already presented on ``message`` stays until taken (a bus
        manager cannot take back a request).
    interrupt_status : Out(2), irq : Out(1), enabled : Out(1)
    message : Out(stream.Signature(MsiMessage))
        Messages to send, one per pending and valid vector.
    rejected : Out(32)
        UPDATEs refused because the address was outside ``params.msi_window``, and commands
        the profile refuses (``command.refuse``).
    pending, vector_valid, vector_masked, issued : Out(N + 1)
        Observation (for proofs; leave unconnected): the pending, the valid and the masked
        vectors, and the vector issued this cycle (one-hot). Zero without MSI; only ``issued``
        with the vector state in block RAM.

    Behaviour
    ---------
    While MSI is enabled an event marks its vector pending; a pending vector merges further
    events. Each cycle the next pending vector that is valid (and not masked), in round-robin
    order after the last one served, is issued: it stops being pending and its table entry is
    read, and in the next cycle the message is on ``message``. Enabling moves InterruptStatus
    into pending vectors (bit 1 → vector 0, bit 0 → every queue vector); disabling moves
    pending vectors back (vector 0 → bit 1, any other → bit 0). InterruptStatus is 0 (unless
    ``keeps_status``) and ``irq`` low while enabled.

    Structure
    ---------
    This class keeps InterruptStatus and the enable (:meth:`_status_and_enable`), the vector
    table (:meth:`_vector_table`) and the message register (:meth:`_message_stage`). The
    pending, valid and masked vectors and the choice of the next one are the vector-state
    store's, submodule ``vectors``
    (:class:`~virtio_mmio.transport.vector_state.VectorStateSignature`; its two
    implementations and how they differ are documented there).

    Latency and throughput
    ----------------------
    Event to ``message.valid``: 2 cycles (pending register, table read). One message per cycle
    while ``message.ready`` is high, so N+1 pending vectors leave in N+2 cycles.
    """

    def __init__(self, params, *, msi=True, masks=False, keeps_status=False, block=None):
        self._params = params
        self._msi = msi
        self._masks = msi and masks
        self._keeps_status = msi and keeps_status
        self._block = block
        super().__init__({
            "used_valid": In(1), "used_queue": In(16), "config_event": In(1),
            "ack": In(2), "command": In(MsiCommand()), "reset": In(1),
            "interrupt_status": Out(2), "irq": Out(1), "enabled": Out(1),
            "message": Out(stream.Signature(MsiMessage)),
            "rejected": Out(32),
            "pending": Out(params.queues + 1), "vector_valid": Out(params.queues + 1),
            "vector_masked": Out(params.queues + 1), "issued": Out(params.queues + 1),
        })

    def _events(self):
        """This cycle's events as InterruptStatus bits: (used buffer, configuration change)."""
        used = self.used_valid & below(self.used_queue, self._params.queues)
        return used, Cat(used, self.config_event)

    def _status_and_enable(self, m, status, enabled, *, back_queue, back_config):
        """InterruptStatus, ``irq`` and the MSI enable (docs/spec.md §7), whichever the vector
        state.

        ``back_queue``/``back_config``: a queue vector / vector 0 is pending, this cycle's
        events included — what switching MSI off moves back into InterruptStatus. Returns
        ``(switch_on, switch_off, wired)``: ``wired`` is InterruptStatus after this cycle's
        ACK and events, which switching on moves into pending vectors (bit 1 → vector 0,
        bit 0 → every queue vector). The vector-state store clears or sets its pending
        vectors on ``switch_off``/``switch_on`` itself."""
        cmd = self.command
        _, event_bits = self._events()
        switch_off = enabled & cmd.enable & ~cmd.enable_value
        switch_on = ~enabled & cmd.enable & cmd.enable_value
        wired = (status & ~self.ack) | event_bits
        back = Cat(back_queue, back_config)
        keep = self._keeps_status
        with m.If(switch_off):
            m.d.sync += [enabled.eq(0), status.eq(back | wired if keep else back)]
        with m.Elif(switch_on):
            m.d.sync += [enabled.eq(1), status.eq(wired if keep else 0)]
        with m.Elif(~enabled | keep):
            m.d.sync += status.eq(wired)
        with m.If(self.reset):
            m.d.sync += self._device_reset(status, enabled)
        m.d.comb += [
            self.interrupt_status.eq(status), self.enabled.eq(enabled),
            self.irq.eq((status != 0) & ~enabled if keep else status != 0),
        ]
        return switch_on, switch_off, wired

    def _device_reset(self, status, enabled):
        """The statements of a device reset: InterruptStatus cleared and MSI disabled."""
        return [enabled.eq(0), status.eq(0)]

    def elaborate(self, platform):
        m = Module()
        p = self._params
        n = p.queues

        status = Signal(2)
        used, event_bits = self._events()

        if not self._msi:
            m.d.sync += status.eq((status & ~self.ack) | event_bits)
            with m.If(self.reset):
                m.d.sync += status.eq(0)
            m.d.comb += [self.interrupt_status.eq(status), self.irq.eq(status != 0)]
            return m

        enabled = Signal()
        m.submodules.vectors = vectors = vector_state(n, masks=self._masks, block=self._block)
        cmd = self.command
        table_r, in_window = self._vector_table(m)
        switch_on, switch_off, wired = self._status_and_enable(
            m, status, enabled, back_queue=vectors.back_queue, back_config=vectors.back_config)
        advance = self._message_stage(m, table_r, vectors.issue, vectors.cancel)
        m.d.comb += [
            vectors.config_event.eq(self.config_event),
            vectors.used.eq(used), vectors.used_queue.eq(self.used_queue),
            vectors.update.eq(cmd.update), vectors.update_in_window.eq(in_window),
            vectors.mask.eq(cmd.mask), vectors.mask_value.eq(cmd.mask_value),
            vectors.command_vector.eq(cmd.vector),
            vectors.enabled.eq(enabled), vectors.switch_on.eq(switch_on),
            vectors.wired.eq(wired), vectors.switch_off.eq(switch_off),
            vectors.reset.eq(self.reset), vectors.advance.eq(advance),
            table_r.addr.eq(vectors.vector),
            self.pending.eq(vectors.pending), self.vector_valid.eq(vectors.vector_valid),
            self.vector_masked.eq(vectors.vector_masked), self.issued.eq(vectors.issued),
        ]
        return m

    def _vector_table(self, m):
        """The vector table, written by UPDATE inside the MSI window, with the refusals
        counted. Returns the read port (transparent to UPDATE) and the window check of the
        staged address.

        In block RAM even for a few vectors by default (on iCE40 the table in flip-flops costs
        ~190 logic cells at N = 1, over the area target); with the request stage
        (``params.pipeline``) a table of at most :data:`TABLE_IN_FLIP_FLOPS` vectors is in
        flip-flops, so the MSI port's address and data leave flip-flops, not a block RAM's
        output (ECP5 N = 1: 131.6 → 156.9 MHz)."""
        p, cmd = self._params, self.command
        style = "logic" if p.pipeline and p.queues + 1 <= TABLE_IN_FLIP_FLOPS else "block"
        m.submodules.table = table = memory.Memory(shape=MsiMessage, depth=p.queues + 1,
                                                   init=[], attrs={"ram_style": style})
        table_w = table.write_port()
        table_r = table.read_port(transparent_for=(table_w,))
        in_window = C(1)
        if p.msi_window is not None:
            base, size = p.msi_window
            in_window = (cmd.address >= base) & (cmd.address + 4 <= base + size)
        m.d.comb += [
            table_w.addr.eq(cmd.vector),
            table_w.data.address.eq(cmd.address),
            table_w.data.data.eq(cmd.data),
            # An UPDATE outside the window does not touch the entry either: a message being
            # issued from it in the same cycle must not pick up the refused address.
            table_w.en.eq(cmd.update & in_window),
        ]
        with m.If((cmd.update & ~in_window) | cmd.refuse):
            m.d.sync += self.rejected.eq(self.rejected + 1)
        return table_r, in_window

    def _message_stage(self, m, table_r, issue, cancel):
        """The message register: the table entry read in the cycle a vector is issued
        (``issue``) is the message from the next cycle on, until taken, unless the store
        cancels it in that next cycle (``cancel``: it is then never on the port). Returns
        ``advance``: the register takes a vector this cycle (it is empty or being emptied).

        ``advance`` depends on the register's flip-flop and the port's ready only, not on
        ``cancel`` (block-RAM data, late in the cycle): a cancelled message the port is not
        ready for is dropped at the edge and nothing is taken in that cycle."""
        out_valid = Signal()
        advance = ~out_valid | self.message.ready
        with m.If(advance):
            m.d.sync += out_valid.eq(issue)
        with m.Elif(cancel):
            m.d.sync += out_valid.eq(0)
        valid = out_valid & ~cancel
        m.d.comb += [
            table_r.en.eq(advance),
            self.message.valid.eq(valid),
            self.message.payload.eq(table_r.data),
        ]
        return advance
