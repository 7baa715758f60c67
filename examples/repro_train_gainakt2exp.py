#!/usr/bin/env python
"""Deprecated (guide §15.1): merged into examples/train_gainakt2exp_repro.py."""

import sys

MESSAGE = (
    "examples/repro_train_gainakt2exp.py is deprecated: use the unified launcher, e.g.\n"
    "  python examples/train_gainakt2exp_repro.py --reproduce_from <experiment_id>\n"
    "  python examples/train_gainakt2exp_repro.py --compare_only --source_exp A --target_exp B"
)

if __name__ == "__main__":
    print(MESSAGE, file=sys.stderr)
    sys.exit(2)
