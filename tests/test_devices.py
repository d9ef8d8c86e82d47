"""The registry of example devices (``virtio_mmio.devices``): the command line, generation, the
board demo and the Linux co-simulation take the device list, defaults, checks and component
from it, so a new device is one entry."""

import pytest

from virtio_mmio.tools.cli import build_parser, params_from_args
from virtio_mmio.board.demo import DEVICES as DEMO_DEVICES
from virtio_mmio.devices import BOARD_DEVICES, EXAMPLE_DEVICES, ExampleDevice, example_device
from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.tools.generate import generate_verilog
from virtio_mmio.params import EndpointParams
from virtio_mmio.devices.rng import RNG_DEFAULTS, VirtioRngEndpoint, rng_params
from virtio_mmio_platforms import BOARDS
from virtio_mmio_sim.host import HOST_SESSIONS


def _choices(command, option="--device"):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if option in a.option_strings).choices)


def test_every_front_door_reads_the_registry():
    assert _choices("generate") == tuple(EXAMPLE_DEVICES) == ("none", "rng")
    assert _choices("build") == _choices("host") == BOARD_DEVICES == DEMO_DEVICES
    assert set(HOST_SESSIONS) == set(BOARD_DEVICES)
    assert all(set(board.devices) <= set(BOARD_DEVICES) for board in BOARDS.values())


def test_rng_entry():
    rng = example_device("rng")
    assert rng.component is VirtioRngEndpoint and rng.on_boards
    assert rng.params() == rng_params()
    assert dict(rng.defaults) == RNG_DEFAULTS
    # The command line's defaults are the device's where the option is not given.
    args = build_parser().parse_args(["generate", "--device", "rng", "-o", "x.v"])
    assert params_from_args(args) == rng_params()
    with pytest.raises(ValueError, match="queues must be 1 for the rng device"):
        rng.params(queues=2)
    with pytest.raises(ValueError, match="device must be one of none, rng, not 'bogus'"):
        example_device("bogus")
    with pytest.raises(TypeError, match="params must be an EndpointParams"):
        rng.top({"queues": 1})


def test_a_new_device_is_one_entry(monkeypatch):
    """A device registered in one place is generated with its defaults and refused with its
    check's message, without touching generate or the command line's code."""
    def check(params):
        if params.queues < 2:
            raise ValueError(f"queues must be at least 2 for the toy device, not "
                             f"{params.queues}")

    toy = ExampleDevice("toy", "two queues, nothing behind them", component=VirtioMmioEndpoint,
                        defaults=(("queues", 2), ("device_id", 26)), check=check)
    monkeypatch.setitem(EXAMPLE_DEVICES, "toy", toy)
    params = toy.params()
    assert (params.queues, params.device_id) == (2, 26)
    text = generate_verilog(params, device="toy")
    assert "module virtio_mmio_endpoint" in text
    with pytest.raises(ValueError, match="at least 2 for the toy device"):
        generate_verilog(EndpointParams(queues=1), device="toy")
