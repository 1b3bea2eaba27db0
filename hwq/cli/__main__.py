"""`python -m hwq.cli` runs the `hwq` command."""

from hwq.cli import main

main()
