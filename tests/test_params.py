"""Construction-time validation (docs/spec.md §12): wrong types raise TypeError, wrong values
ValueError, each naming the parameter and what is allowed."""

import pytest

from amaranth.back import rtlil

from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import RegisterMap


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(queues=0), ValueError, r"queues must be an integer in 1\.\.2047, not 0"),
    (dict(queues=2048), ValueError, r"queues must be .*2047"),
    (dict(queues="4"), TypeError, r"queues must be an integer"),
    (dict(queues=True), TypeError, r"queues must be an integer"),
    (dict(profile="v3"), ValueError, r"profile must be one of seed, linux-k1, plain-v2"),
    (dict(profile=3), TypeError, r"profile must be a string"),
    (dict(pipeline="yes"), TypeError, r"pipeline must be True or False, not 'yes'"),
    (dict(pipeline=1), TypeError, r"pipeline must be True or False, not 1"),
    (dict(bus="apb"), ValueError, r"bus must be one of axil, wishbone"),
    (dict(wishbone_mode="burst"), ValueError, r"wishbone_mode must be one of"),
    (dict(queue_size=0), ValueError, r"queue_size must be an integer in 1\.\.32768"),
    (dict(queue_size=32769), ValueError, r"queue_size"),
    (dict(queues=2, queue_size=[4]), ValueError, r"queue_size must be one integer or a "
                                                  r"sequence of 2"),
    (dict(queue_size="big"), TypeError, r"queue_size must be an integer or a sequence"),
    (dict(device_id=0), ValueError, r"device_id must be a non-zero"),
    (dict(device_id=1 << 32), ValueError, r"device_id"),
    (dict(vendor_id=-1), ValueError, r"vendor_id"),
    (dict(features=0), ValueError, r"features must include VIRTIO_F_VERSION_1"),
    (dict(features=1 << 64), ValueError, r"features must be a 64-bit integer"),
    (dict(config_size=6), ValueError, r"config_size must be a multiple of 4"),
    (dict(config_size=0x10000), ValueError, r"config_size"),
    (dict(notify_multiplier=6), ValueError, r"notify_multiplier must be 0 or a multiple of 4"),
    (dict(notify_base=0x50), ValueError, r"notify_base must not overlap the registers or the "
                                         r"config space"),
    (dict(notify_base=0x202), ValueError, r"notify_base must be a multiple of 4"),
    (dict(profile="plain-v2", notify_base=0x400), ValueError,
     r"notify_base and notify_multiplier need a profile with doorbells"),
    (dict(shm=[(1, 2)]), TypeError, r"shm must be a sequence of \(id, base, length\)"),
    (dict(shm=[(256, 0, 1)]), ValueError, r"shm id must be an integer in 0\.\.255"),
    (dict(shm=[(1, 0, 1), (1, 8, 1)]), ValueError, r"shm id must be unique"),
    (dict(shm=[(1, 0, (1 << 64) - 1)]), ValueError, r"shm length"),
    (dict(msi_window=(0, 2)), ValueError, r"msi_window size"),
    (dict(msi_window=5), TypeError, r"msi_window must be \(base, size\)"),
    (dict(msi_window=((1 << 64) - 4, 8)), ValueError, r"msi_window must lie inside"),
    (dict(name="1bad"), ValueError, r"name must be a Verilog identifier"),
    (dict(name="module"), ValueError, r"name must be a Verilog identifier "
                                      r"\(\[A-Za-z_\]\[A-Za-z0-9_\$\]\*\) that is not a Verilog "
                                      r"or SystemVerilog keyword, not 'module'"),
    (dict(name="logic"), ValueError, r"SystemVerilog keyword, not 'logic'"),
    (dict(name="endmodule"), ValueError, r"keyword, not 'endmodule'"),
    (dict(name="ep\n"), ValueError, r"name must be a Verilog identifier"),
    (dict(name=""), ValueError, r"name must be a Verilog identifier"),
    (dict(name="\\ep"), ValueError, r"name must be a Verilog identifier"),
    (dict(name=7), TypeError, r"name must be a string, not 7"),
    (dict(profile="plain-v2", addr_width=8), ValueError, r"addr_width must be an integer in 9\.\.32"),
    (dict(queues=4, addr_width=9), ValueError, r"addr_width must be an integer in 10\.\.32"),
])
def test_invalid_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        EndpointParams(**kwargs)


@pytest.mark.parametrize("name", ["ep", "_ep", "a$b", "Module", "module_0", "logic1"])
def test_names_that_are_verilog_identifiers(name):
    assert EndpointParams(name=name).name == name


def test_window_widens_to_hold_config_space_and_doorbells():
    assert EndpointParams(queues=1, config_size=0).addr_width == 9
    p = EndpointParams(queues=4, config_size=256)
    assert (p.notify_base, p.notify_multiplier) == (0x200, 4)
    assert p.doorbell_end == 0x210 and p.addr_width == 10
    assert EndpointParams(queues=2047, notify_multiplier=0x1000).addr_width == 23
    assert EndpointParams(profile="plain-v2", config_size=0x100).addr_width == 9
    assert EndpointParams(profile="plain-v2").notify_layout == 0
    assert EndpointParams(notify_multiplier=8, notify_base=0x400).notify_layout == 0x0008_0400


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_endpoint_refuses_wrong_argument_types():
    with pytest.raises(TypeError, match="params must be an EndpointParams"):
        VirtioMmioEndpoint({"queues": 4})
    with pytest.raises(ValueError, match="queues"):
        VirtioMmioEndpoint(queues=9999)


def test_register_map_rejects_unknown_profile():
    with pytest.raises(ValueError, match="Profile must be one of seed, linux-k1, plain-v2"):
        RegisterMap("linux-k2")


def test_register_map_is_consistent():
    for profile in ("seed", "plain-v2"):
        regmap = RegisterMap(profile)
        lanes = {}
        for reg in regmap:
            assert reg.offset % (reg.width // 8) == 0
            assert reg.offset < 0x100
            assert not lanes.get(reg.word, 0) & reg.lanes, reg.name   # no overlap
            lanes[reg.word] = lanes.get(reg.word, 0) | reg.lanes
    assert RegisterMap("seed")["MsiCmd"].lanes == 0b1100
    assert RegisterMap("seed")["MsiStatus"].lanes == 0b0011


@pytest.mark.parametrize("queues", [1, 2, 64, 2047])
def test_queue_counts_elaborate(queues):
    rtlil.convert(VirtioMmioEndpoint(queues=queues))
