"""Register-access backends for cocotb, driving the generated Verilog's subordinate port with
the cocotbext bus-functional models (docs/spec.md §9 port names).

* :class:`CocotbAxiLite`: cocotbext-axi ``AxiLiteMaster`` on ``s_axil_*``. Several accesses may
  be in flight at once (start them as concurrent tasks); random pauses on all five channels.
* :class:`CocotbWishbone`: cocotbext-wishbone ``WishboneMaster`` on ``s_wb_*``, classic or
  pipelined (the master picks pipelined when the DUT has ``s_wb_stall``); random idle cycles.

Both raise :class:`BusError` on a response other than OKAY / ``ack``: docs/spec.md §4 says every
access completes normally.
"""

import itertools
import random

from cocotb.triggers import ClockCycles, Lock
from cocotbext.axi import AxiLiteBus, AxiLiteMaster
from cocotbext.wishbone import WBOp, WishboneMaster

from .access import RegisterAccess


__all__ = ["signal_value", "BusError", "random_pauses", "pattern_pauses", "CocotbAxiLite",
           "CocotbWishbone", "backend_for"]


def signal_value(handle):
    """A DUT signal as an unsigned integer."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class BusError(Exception):
    """The subordinate answered an access with an error, or a reset cancelled it."""


def random_pauses(probability, rng=random):
    """An endless pause generator for cocotbext-axi: True (hold the channel) with
    ``probability`` each cycle."""
    while True:
        yield rng.random() < probability


def pattern_pauses(pattern):
    """An endless pause generator repeating ``pattern`` (a sequence of 0/1)."""
    return itertools.cycle(bool(p) for p in pattern)


def _strobe_span(strobe):
    """``(first_lane, lanes)`` of a contiguous non-empty strobe; ValueError otherwise."""
    if not 0 < strobe <= 0xF:
        raise ValueError(f"Strobe must be a non-empty 4-bit lane mask, not {strobe:#x}")
    first = (strobe & -strobe).bit_length() - 1
    lanes = bin(strobe).count("1")
    if strobe != ((1 << lanes) - 1) << first:
        raise ValueError(f"Strobe {strobe:#06b} is not contiguous: cocotbext-axi derives wstrb "
                         f"from a byte range, so only contiguous lanes can be written")
    return first, lanes


class CocotbAxiLite(RegisterAccess):
    """``AxiLiteMaster`` on the ``s_axil`` ports of ``dut``.

    A write with strobe other than 0xF is issued as a narrow write of exactly the enabled bytes
    at their byte address, which cocotbext-axi turns into that ``wstrb`` (so only contiguous
    strobes, which is all a CPU's 1-, 2- and 4-byte stores produce).

    ``pauses``: None, or a callable ``channel_name -> generator`` (channel names ``"aw"``,
    ``"w"``, ``"b"``, ``"ar"``, ``"r"``) giving each channel its own pause generator; see
    :meth:`set_pauses`.
    """

    CHANNELS = ("aw", "w", "b", "ar", "r")

    def __init__(self, dut, *, clock=None, reset=None, prefix="s_axil", pauses=None):
        super().__init__()
        self.dut = dut
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix),
                                    dut.clk if clock is None else clock,
                                    dut.rst if reset is None else reset)
        self.set_pauses(pauses)

    def _channel(self, name):
        side = self.master.write_if if name in ("aw", "w", "b") else self.master.read_if
        return getattr(side, f"{name}_channel")

    def set_pauses(self, pauses):
        """Give every channel a fresh generator from ``pauses(channel_name)``; None clears
        them (full speed)."""
        for name in self.CHANNELS:
            channel = self._channel(name)
            if pauses is None:
                channel.clear_pause_generator()
            else:
                channel.set_pause_generator(pauses(name))

    async def read_word(self, offset):
        response = await self.master.read(offset, 4)
        if response is None:
            raise BusError(f"Read of {offset:#x} flushed by a reset")
        if response.resp != 0:
            raise BusError(f"Read of {offset:#x} answered {response.resp!r}")
        return int.from_bytes(response.data, "little")

    async def write_word(self, offset, value, strobe=0xF):
        first, lanes = _strobe_span(strobe)
        data = ((value >> 8 * first) & ((1 << 8 * lanes) - 1)).to_bytes(lanes, "little")
        response = await self.master.write(offset + first, data)
        if response is None:
            raise BusError(f"Write of {offset:#x} flushed by a reset")
        if response.resp != 0:
            raise BusError(f"Write of {offset:#x} (strobe {strobe:#x}) answered "
                           f"{response.resp!r}")

    async def idle(self):
        await self.master.wait()


class CocotbWishbone(RegisterAccess):
    """``WishboneMaster`` on the ``s_wb`` ports of ``dut``; one access per bus cycle (``cyc``),
    as a CPU's uncached loads and stores to device memory appear.

    ``idle``: None or a callable returning the number of clocks to hold ``cyc`` high before
    ``stb`` for the next access. ``gap``: None or a callable returning the number of clocks with
    ``cyc`` low before the next access. ``timeout``: clocks after which a missing ``ack`` or an
    endless ``stall`` fails the access instead of hanging the test.
    """

    def __init__(self, dut, *, clock=None, prefix="s_wb", idle=None, gap=None, timeout=2000):
        super().__init__()
        self.dut = dut
        self.clock = dut.clk if clock is None else clock
        # cocotbext-wishbone's names for data in/out differ from the docs/spec.md §9 ports.
        signals = {"cyc": "cyc", "stb": "stb", "we": "we", "adr": "adr",
                   "datwr": "dat_w", "datrd": "dat_r", "ack": "ack"}
        self.master = WishboneMaster(dut, prefix, self.clock, width=32, timeout=timeout,
                                     signals_dict=signals)
        self.pipelined = hasattr(self.master.bus, "stall")
        self.timeout = timeout
        self.idle_cycles = idle or (lambda: 0)
        self.gap_cycles = gap or (lambda: 0)
        # The master serves one bus cycle at a time; concurrent callers queue here.
        self._lock = Lock()

    def set_timing(self, idle=None, gap=None):
        self.idle_cycles = idle or (lambda: 0)
        self.gap_cycles = gap or (lambda: 0)

    async def _access(self, offset, value, strobe):
        async with self._lock:
            gap = self.gap_cycles()
            if gap:
                await ClockCycles(self.clock, gap)
            op = WBOp(adr=offset >> 2, dat=value, sel=strobe, idle=self.idle_cycles(),
                      acktimeout=self.timeout)
            results = await self.master.send_cycle([op])
        if len(results) != 1:
            raise BusError(f"Access to {offset:#x}: {len(results)} replies instead of one")
        if results[0].ack != 1:
            raise BusError(f"Access to {offset:#x} answered with code {results[0].ack} "
                           f"(2 = err, 3 = rty)")
        return results[0].datrd

    async def read_word(self, offset):
        return (await self._access(offset, None, 0xF)).to_unsigned()

    async def write_word(self, offset, value, strobe=0xF):
        if not 0 < strobe <= 0xF:
            raise ValueError(f"Strobe must be a non-empty 4-bit lane mask, not {strobe:#x}")
        await self._access(offset, value, strobe)

    async def idle(self):
        async with self._lock:
            pass


def backend_for(dut, bus, **kwargs):
    """The backend for ``bus`` (``"axil"`` or ``"wishbone"``)."""
    if bus == "axil":
        return CocotbAxiLite(dut, **kwargs)
    if bus == "wishbone":
        return CocotbWishbone(dut, **kwargs)
    raise ValueError(f"bus must be 'axil' or 'wishbone', not {bus!r}")
