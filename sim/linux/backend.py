"""What the Python device back-ends of the Linux co-simulation share
(:class:`~.cosim.RngBackend`, :class:`~.console.ConsoleBackend`): the split-ring layout, the
error a malformed ring raises, the device-side ports at rest, a configuration-change event, a
read of the queue-state port and 16-bit reads of guest memory over the link. Inputs are driven
on the falling clock edge (stable at the next rising edge) and outputs sampled there."""

import struct

from cocotb.triggers import FallingEdge

from virtio_mmio_sim.cocotb_bus import signal_value as value


__all__ = ["DESC_SIZE", "DESC_F_NEXT", "DESC_F_WRITE", "DESC_F_INDIRECT", "RingError",
           "DeviceBackend"]

# Split-ring layout (virtio 1.x, little-endian).
DESC_SIZE = 16
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4

#: The endpoint's device-side inputs a back-end drives (docs/spec.md §9).
_DEVICE_INPUTS = ("notify_ready", "used_valid", "used_queue", "config_changed", "needs_reset",
                  "q_sel", "cfg_rdata")


class RingError(Exception):
    """The driver's ring is malformed: the device raises needs_reset and stops."""


class DeviceBackend:
    """The base of a device back-end on ``dut``'s device-side ports, guest memory over
    ``link`` (set later when the link is not up yet)."""

    def __init__(self, dut, link):
        self.dut = dut
        self.link = link
        self.config_events = 0

    def _ports_at_rest(self):
        """Every device-side input 0: nothing taken, no event, queue 0 selected."""
        for name in _DEVICE_INPUTS:
            getattr(self.dut, name).value = 0

    async def config_change(self):
        """Raise a configuration-change event (vector 0) for one cycle (a MARK may ask)."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.config_changed.value = 1
        self.config_events += 1
        await FallingEdge(dut.clk)
        dut.config_changed.value = 0

    async def _queue_state(self, queue):
        """``(ready, num, desc, driver, device)`` of ``queue`` from the queue-state port (two
        falling edges: q_sel is sampled at the first rising edge, the state shows a cycle
        later)."""
        dut = self.dut
        dut.q_sel.value = queue
        await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        return (value(dut.q_ready), value(dut.q_num), value(dut.q_desc), value(dut.q_driver),
                value(dut.q_device))

    def _u16(self, addr):
        return struct.unpack("<H", self.link.mem_read(addr, 2))[0]
