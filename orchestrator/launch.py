"""`python -m orchestrator.launch CONFIG ...`: the original spelling of `orchestrate launch CONFIG ...`."""

import sys

from orchestrator.commands.main import launch_main as main

if __name__ == "__main__":
    sys.exit(main())
