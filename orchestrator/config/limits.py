"""Caps on the size of a sweep: far above sensible values, low enough that nothing downstream breaks.

Caps on trial fields (epochs, batch size, widths, seeds, model parameters) live with the trial schema in
`trainables.schema`; these are the sweep's own. The README's "Limits" table states both sets.
"""

from __future__ import annotations

MAX_TRIALS = 10_000  # grid points x num_samples: each trial is a directory and a row in every table
MAX_BRACKETS = 8
MAX_CPUS_PER_TRIAL = 1_024
MAX_GPUS_PER_TRIAL = 64
MAX_NAME_LENGTH = 100  # leaves room under a filesystem's 255-byte names for "-<n>" and Ray's suffixes
MAX_CONFIG_BYTES = 1 << 20  # a config file is read whole: 1 MiB is thousands of lines
MAX_CONFIG_NODES = 100_000  # values after YAML aliases are expanded (an alias bomb expands to billions)
MAX_CONFIG_DEPTH = 32  # nesting of mappings and lists
