"""`python -m orchestrator COMMAND ...`: the same as the `orchestrate` command."""

import sys

from orchestrator.commands.main import main

sys.exit(main())
