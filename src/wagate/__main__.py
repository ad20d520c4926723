from __future__ import annotations

from wagate.cli import main

main()
