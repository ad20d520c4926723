from __future__ import annotations

from wagate.cli.main import main

main()
