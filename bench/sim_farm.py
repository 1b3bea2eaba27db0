"""Many simulated instruments in one process, each on its own pseudo-terminal and link.

`python -m bench.sim_farm DIR COUNT PREFIX` serves COUNT scpi devices, linked as
DIR/PREFIX0 … until SIGTERM. Hundreds of `hwq sim` processes would cost the machine more than
the device workers under test; threads blocked in select cost next to nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from worker_host.simulator import SimulatedDevice


def main() -> None:
    """Serve the devices until SIGTERM or SIGINT."""
    folder, count, prefix = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    devices = [
        SimulatedDevice("scpi", f"{prefix}{i}", link_path=folder / f"{prefix}{i}")
        for i in range(count)
    ]
    for device in devices:
        device.start()
        device.serve_in_thread()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.wait(1.0):
        pass
    for device in devices:
        device.stop()


if __name__ == "__main__":
    main()
