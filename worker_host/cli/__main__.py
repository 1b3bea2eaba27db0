"""`python -m worker_host.cli` runs the `hwq` command."""

from worker_host.cli import main

main()
