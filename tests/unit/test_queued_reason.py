"""`hwq run` names why a command is still queued from its device's presence."""

from __future__ import annotations

import pytest

from hwq.cli.queued_reason import why_still_queued


@pytest.mark.parametrize(
    ("presence", "error", "says", "ends"),
    [
        ("offline", None, "is offline: no worker serves it", "once the device's worker starts"),
        ("port-missing", "no serial port for usb:0403:6001:A1: that USB adapter is not plugged "
         "in", "is port-missing: its port is gone or cannot be opened (no serial port for "
         "usb:0403:6001:A1",
         "once its worker opens the port again"),
        ("inactive", None, "is inactive: it was deactivated", "`hwq devices activate dmm`"),
        ("failed", "device worker exited with status 1; gave up\nlog line", "failed: its worker "
         "kept crashing (device worker exited with status 1; gave up)", "`hwq devices show dmm`"),
    ],
)  # fmt: skip
def test_each_presence_names_what_ends_the_wait(
    presence: str, error: str | None, says: str, ends: str
) -> None:
    device = {"name": "dmm", "presence": presence, "error": error, "online": False}

    message = why_still_queued(device, "c1", 12)

    assert message is not None
    assert message.startswith(f"device dmm {says}"), message
    assert ends in message
    assert "command c1 is still queued after 12 s" in message
    assert "log line" not in message
    assert message.endswith("`hwq commands cancel c1` drops it")


def test_an_online_device_gives_no_reason() -> None:
    assert why_still_queued({"name": "dmm", "presence": "online", "online": True}, "c1", 3) is None


def test_an_offline_polling_device_is_waiting_for_its_agent() -> None:
    device = {"name": "board", "transport": "http-poll", "presence": "offline", "online": False}

    message = why_still_queued(device, "c1", 3)

    assert message is not None
    assert message.startswith("device board is offline: no agent polls for it (`hwq poll-device")
    assert "It runs once the device polls" in message
