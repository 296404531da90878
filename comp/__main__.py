"""``python -m comp`` (also what torchrun launches)."""

from comp.cli import main

main()
