"""Bus signatures (docs/spec.md §8): AXI4-Lite and Wishbone B4, as seen from the manager; the
one-access-at-a-time request interface of the DMA managers and the message layout of the
write managers."""

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["AXI4LiteSignature", "WishboneSignature", "WISHBONE_MODES", "WriteMessage",
           "DmaAccessSignature"]


#: One posted write of a write manager: 32 bits of ``data`` to the byte ``address`` (full
#: strobes). The MSI messages of the endpoint are these.
WriteMessage = data.StructLayout({"address": 64, "data": 32})


WISHBONE_MODES = ("classic", "pipelined")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite, 32-bit data, manager's view (a subordinate port is ``In(...)``).

    ``read=False`` gives the write channels only (AW, W, B), as the MSI manager uses."""

    def __init__(self, addr_width, *, read=True):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 1..64, not {addr_width!r}")
        self.addr_width = addr_width
        self.read = read
        members = {
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        }
        if read:
            members.update({
                "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1),
                "arready": In(1),
                "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
            })
        super().__init__(members)


class WishboneSignature(wiring.Signature):
    """Wishbone B4, 32-bit data, 8-bit granularity, word address; manager's view.

    ``mode="pipelined"`` adds ``stall``. ``read=False`` leaves out ``dat_r`` (a write-only
    manager such as the MSI port)."""

    def __init__(self, addr_width, *, mode="classic", read=True):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 1..64, not {addr_width!r}")
        if mode not in WISHBONE_MODES:
            raise ValueError(f"Wishbone mode must be one of {', '.join(WISHBONE_MODES)}, "
                             f"not {mode!r}")
        self.addr_width = addr_width
        self.mode = mode
        members = {
            "adr": Out(addr_width), "dat_w": Out(32), "sel": Out(4),
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "ack": In(1), "err": In(1),
        }
        if read:
            members["dat_r"] = In(32)
        if mode == "pipelined":
            members["stall"] = In(1)
        super().__init__(members)


class DmaAccessSignature(wiring.Signature):
    """One bus access at a time, from the device logic to a DMA manager (requester's view).

    ``valid`` and the request (``address`` — a byte address, bits 1:0 ignored —, ``write``,
    ``data``, ``strobe``) stay up and unchanged until the cycle the manager answers with
    ``done`` (``rdata``, ``error``). In that cycle the requester may change the request; the
    manager treats whatever is presented in the next cycle with ``valid`` as a new access."""

    def __init__(self):
        super().__init__({
            "valid": Out(1), "address": Out(64), "write": Out(1), "data": Out(32),
            "strobe": Out(4),
            "done": In(1), "rdata": In(32), "error": In(1),
        })
