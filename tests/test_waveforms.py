"""The timing diagrams of ``docs/timing/`` (:mod:`virtio_mmio_sim.waveforms`): each comes
from a trace of the simulation, shows the latency the documentation states, and the committed
files are what the simulation gives today."""

import json
from pathlib import Path

import pytest

from virtio_mmio_sim.waveforms import SCENARIOS, trace, wavejson, write_waveforms


DOCS = Path(__file__).resolve().parent.parent / "docs" / "timing"


def _rows(name):
    return dict(trace(SCENARIOS[name]))


def _first(values, predicate=bool):
    return next(cycle for cycle, value in enumerate(values) if predicate(value))


def test_read_latency_one():
    r = _rows("axil-read")
    ar = _first(zip(r["s_axil_arvalid"], r["s_axil_arready"]), all)
    assert _first(r["s_axil_rvalid"]) == ar + 1
    assert r["s_axil_rdata"][ar + 1] == 3                         # Version


def test_write_response_two_clocks_after():
    """The write is taken into the AW/W buffers, applied at the next edge, and answered with
    it: BVALID and the new register value two clocks after the handshake."""
    r = _rows("axil-write")
    aw = _first(zip(r["s_axil_awvalid"], r["s_axil_awready"], r["s_axil_wvalid"]), all)
    assert _first(r["s_axil_bvalid"]) == aw + 2
    assert r["status"][aw + 1] == 0 and r["status"][aw + 2] == 1


def test_back_to_back_one_per_clock():
    r = _rows("axil-back-to-back")
    start = _first(r["s_axil_arvalid"])
    assert r["s_axil_rvalid"][start + 1:start + 5] == [1, 1, 1, 1]
    assert r["s_axil_rdata"][start + 1:start + 5] == [0x74726976, 3, 4, 0x1AF4]
    assert r["s_axil_bvalid"][start + 2:start + 6] == [1, 1, 1, 1]


def test_doorbell_to_notify_one_clock():
    r = _rows("doorbell-notify")
    aw = _first(zip(r["s_axil_awvalid"], r["s_axil_awready"]), all)
    assert _first(r["notify_valid"]) == aw + 1
    assert r["notify_queue"][aw + 1] == 1
    taken = _first(zip(r["notify_valid"], r["notify_ready"]), all)
    assert all(r["notify_valid"][aw + 1:taken + 1]) and not r["notify_valid"][taken + 1]


def test_event_to_msi_two_clocks():
    r = _rows("event-msi")
    event = _first(r["used_valid"])
    assert _first(r["m_axil_awvalid"]) == event + 2
    assert r["m_axil_awaddr"][event + 2] == 0xFEE0_0004
    assert r["m_axil_wdata"][event + 2] == 1


def test_device_ports():
    r = _rows("device-ports")
    sel = _first(r["q_sel"])
    assert r["q_ready"][sel + 1] == 1 and r["q_desc"][sel + 1] == 0x1_0000
    re = _first(r["cfg_re"])
    assert r["cfg_rdata"][re + 1] == 0xC0FFEE
    assert r["s_axil_rvalid"][re + 1] and r["s_axil_rdata"][re + 1] == 0xC0FFEE


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_committed_diagram_is_the_simulation(name):
    """docs/timing/<name>.json is the WaveJSON of today's trace (regenerate with
    ``.venv/bin/python -m virtio_mmio_sim.waveforms``), and its SVG is there."""
    scenario = SCENARIOS[name]
    assert json.loads((DOCS / f"{name}.json").read_text()) == \
        wavejson(scenario, trace(scenario))
    assert (DOCS / f"{name}.svg").read_text().startswith("<?xml")


def test_rendering(tmp_path):
    written = write_waveforms(tmp_path, ["axil-read"])
    svg = (tmp_path / "axil-read.svg").read_text()
    assert len(written) == 2 and "<svg" in svg and "s_axil_rvalid" in svg
