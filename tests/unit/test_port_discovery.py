"""Simulated USB adapters are listed like real ones, and `usb:` addresses find them again
under whatever terminal they have after being plugged back in."""

from __future__ import annotations

from pathlib import Path

import pytest
import serial

from tasks.errors import DeviceError
from worker_host.port_address import PortAddress
from worker_host.port_discovery import discover, simulated_ports
from worker_host.sim_usb import SimulatedUsbAdapter, UsbIdentity


def test_an_adapter_is_listed_with_its_identity(tmp_path: Path) -> None:
    adapter = SimulatedUsbAdapter("scpi", "s", UsbIdentity.parse("1A86:7523:X9"), tmp_path)
    path = adapter.plug()
    try:
        records = discover(tmp_path, by_id_dir=tmp_path / "none").records({path: "scope"})
        (mine,) = [r for r in records if r["path"] == path]
        assert mine == {
            "path": path,
            "by_id": str(tmp_path / "usb-HWQ_Sim_X9-if00-port0"),
            "description": "HWQ Sim scpi (X9)",
            "hwid": "USB VID:PID=1a86:7523 SER=X9 LOCATION=1-1",
            "vid": "1a86",
            "pid": "7523",
            "serial_number": "X9",
            "location": "1-1",
            "manufacturer": "HWQ",
            "product": "Sim scpi",
            "device": "scope",
        }
    finally:
        adapter.unplug()
    assert simulated_ports(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_usb_address_follows_the_adapter_across_a_replug(tmp_path: Path) -> None:
    adapter = SimulatedUsbAdapter("scpi", "s", UsbIdentity.parse("1a86:7523:R1"), tmp_path)
    address = PortAddress.parse("usb:1a86:7523:R1")
    first = adapter.plug()
    try:
        assert address.serial_url(discover(tmp_path).ports) == first
        adapter.unplug()
        with pytest.raises(DeviceError, match="not plugged in"):
            address.serial_url(discover(tmp_path).ports)
        second = adapter.plug()
        assert address.serial_url(discover(tmp_path).ports) == second
        with serial.Serial(second, timeout=5) as port:
            port.write(b"*IDN?\n")
            assert port.readline().startswith(b"HWQ,SIM,s")
    finally:
        adapter.unplug()


def test_a_bad_usb_spec_names_the_format() -> None:
    with pytest.raises(ValueError, match="VID:PID:SERIAL"):
        UsbIdentity.parse("1a86:75:ABC")
