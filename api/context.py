"""Where a request finds the service the app was built with."""

from __future__ import annotations

from typing import cast

from flask import current_app

from tasks.service import HwqService

# Key of the service in `app.extensions`.
EXTENSION_KEY = "hwq"


def hwq_service() -> HwqService:
    """The service behind the current app."""
    return cast(HwqService, current_app.extensions[EXTENSION_KEY])
