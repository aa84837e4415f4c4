"""``python -m app.cli …``: the ``syntumor`` command (used for training children and torchrun)."""

from app.cli import main

main()
