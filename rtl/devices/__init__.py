"""The example devices behind the endpoint, in one registry (:data:`EXAMPLE_DEVICES`).

``virtio-mmio generate --device``, the board demo (``build``/``host --device``), the Linux
co-simulation's RTL device and the tests all read it: its name, the parameter defaults it
brings, the check of parameters it cannot take, and the component that puts it behind the
endpoint (generation flattens its interfaces by its ``port_prefixes``). Adding an example
device is one entry here (plus, for the boards, its demo SoC variant in
:mod:`virtio_mmio.board.demo` and its host session in :mod:`virtio_mmio_sim.host`).
"""

from dataclasses import dataclass

from ..endpoint import VirtioMmioEndpoint
from ..params import EndpointParams


__all__ = ["ExampleDevice", "EXAMPLE_DEVICES", "BOARD_DEVICES", "example_device"]


@dataclass(frozen=True)
class ExampleDevice:
    """One example device.

    ``defaults``: ``EndpointParams`` keyword arguments the device brings where the caller
    gives none; ``check``: a function raising ``ValueError`` naming a parameter the device
    cannot take (or ``None``); ``component``: the top component for validated parameters;
    ``on_boards``: whether the board demo has a variant with it."""

    name: str
    doc: str
    component: object
    defaults: tuple = ()
    check: object = None
    on_boards: bool = False

    def params(self, **kwargs):
        """:class:`EndpointParams` with the device's defaults under ``kwargs``, checked."""
        params = EndpointParams(**{**dict(self.defaults), **kwargs})
        self.check_params(params)
        return params

    def default(self, name, fallback=None):
        """The device's default for parameter ``name``, else ``fallback``."""
        return dict(self.defaults).get(name, fallback)

    def check_params(self, params):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be an EndpointParams, not {params!r}")
        if self.check is not None:
            self.check(params)

    def top(self, params):
        """The component for ``params`` (checked first)."""
        self.check_params(params)
        return self.component(params)


def _rng():
    from . import rng
    return ExampleDevice(
        "rng", "virtio-rng: one request queue, buffers filled by DMA from an xorshift32 "
              "generator (virtio_mmio.devices.rng)",
        component=rng.VirtioRngEndpoint,
        defaults=tuple(rng.RNG_DEFAULTS.items()), check=rng.check_rng_params,
        on_boards=True)


#: name -> :class:`ExampleDevice`; ``"none"`` is the bare endpoint.
EXAMPLE_DEVICES = {
    "none": ExampleDevice("none", "the bare endpoint: the device logic is the integrator's",
                          component=VirtioMmioEndpoint),
    "rng": _rng(),
}


#: What the board demo SoC can carry behind the endpoint (``build``/``host --device``): its own
#: demo device, and every example device with a board variant.
BOARD_DEVICES = ("demo", *(name for name, device in EXAMPLE_DEVICES.items()
                           if device.on_boards))


def example_device(name):
    """The registered device ``name``; ``ValueError`` naming the allowed ones otherwise."""
    if name not in EXAMPLE_DEVICES:
        raise ValueError(f"device must be one of {', '.join(EXAMPLE_DEVICES)}, not {name!r}")
    return EXAMPLE_DEVICES[name]
