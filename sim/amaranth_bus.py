"""Register-access backends for Amaranth's simulator, driving a
:class:`~virtio_mmio.endpoint.VirtioMmioEndpoint`'s subordinate port from a testbench.

Each backend makes one access at a time, as a CPU does for device memory. ``pause`` is an
optional callable returning True on cycles where the manager should hold back (random
valid/ready timing)."""

from .access import RegisterAccess


__all__ = ["AmaranthAxiLite", "AmaranthWishbone", "backend_for"]


class _Base(RegisterAccess):
    def __init__(self, ctx, dut, *, pause=None):
        super().__init__()
        self.ctx = ctx
        self.dut = dut
        self.pause = pause or (lambda: False)

    async def _idle(self):
        while self.pause():
            await self.ctx.tick()


class AmaranthAxiLite(_Base):
    """One AXI4-Lite access at a time on ``s_axil_*``; with ``pause``, AW and W are presented
    in random order and cycles apart, and RREADY/BREADY are held low for random cycles."""

    async def read_word(self, offset):
        ctx, dut = self.ctx, self.dut
        await self._idle()
        ctx.set(dut.bus.araddr, offset)
        ctx.set(dut.bus.arvalid, 1)
        await ctx.tick().until(dut.bus.arready)
        ctx.set(dut.bus.arvalid, 0)
        while True:
            ctx.set(dut.bus.rready, not self.pause())
            rvalid, rready, rdata = await ctx.tick().sample(
                dut.bus.rvalid, dut.bus.rready, dut.bus.rdata).until(1)
            if rvalid and rready:
                break
        ctx.set(dut.bus.rready, 0)
        return rdata

    async def write_word(self, offset, value, strobe=0xF):
        ctx, dut = self.ctx, self.dut
        await self._idle()
        aw_done = w_done = False
        aw_first = not self.pause()
        while not (aw_done and w_done):
            if not aw_done and (aw_first or w_done or not self.pause()):
                ctx.set(dut.bus.awaddr, offset)
                ctx.set(dut.bus.awvalid, 1)
            if not w_done and (not aw_first or aw_done or not self.pause()):
                ctx.set(dut.bus.wdata, value)
                ctx.set(dut.bus.wstrb, strobe)
                ctx.set(dut.bus.wvalid, 1)
            awv, awr, wv, wr = await ctx.tick().sample(
                dut.bus.awvalid, dut.bus.awready,
                dut.bus.wvalid, dut.bus.wready).until(1)
            if awv and awr:
                aw_done = True
                ctx.set(dut.bus.awvalid, 0)
            if wv and wr:
                w_done = True
                ctx.set(dut.bus.wvalid, 0)
        while True:
            ctx.set(dut.bus.bready, not self.pause())
            bvalid, bready = await ctx.tick().sample(
                dut.bus.bvalid, dut.bus.bready).until(1)
            if bvalid and bready:
                break
        ctx.set(dut.bus.bready, 0)


class AmaranthWishbone(_Base):
    """One Wishbone access at a time on ``s_wb_*`` (classic or pipelined)."""

    async def _cycle(self, offset, value, strobe, write):
        ctx, dut = self.ctx, self.dut
        await self._idle()
        ctx.set(dut.bus.adr, offset >> 2)
        ctx.set(dut.bus.dat_w, value)
        ctx.set(dut.bus.sel, strobe)
        ctx.set(dut.bus.we, write)
        ctx.set(dut.bus.cyc, 1)
        ctx.set(dut.bus.stb, 1)
        if hasattr(dut.bus, "stall"):
            await ctx.tick().until(~dut.bus.stall)
            ctx.set(dut.bus.stb, 0)
        ack, data = await ctx.tick().sample(dut.bus.ack, dut.bus.dat_r).until(dut.bus.ack)
        ctx.set(dut.bus.stb, 0)
        ctx.set(dut.bus.cyc, 0)
        return data

    async def read_word(self, offset):
        return await self._cycle(offset, 0, 0xF, 0)

    async def write_word(self, offset, value, strobe=0xF):
        await self._cycle(offset, value, strobe, 1)


def backend_for(ctx, dut, **kwargs):
    """The backend matching the endpoint's bus."""
    if dut.params.bus == "axil":
        return AmaranthAxiLite(ctx, dut, **kwargs)
    return AmaranthWishbone(ctx, dut, **kwargs)
