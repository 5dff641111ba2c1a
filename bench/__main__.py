"""`python -m bench ...`: the same as `python -m orchestrator bench ...`."""

import sys

from orchestrator.commands.main import main

sys.exit(main(["bench", *sys.argv[1:]]))
