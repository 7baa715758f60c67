#!/usr/bin/env bash
# The whole test suite: static checks, unit and integration tiers, the Ray tier, then the Docker tier.
# Run inside an environment where the project is installed (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check gainakt harness examples benchmarks tests
mypy gainakt harness
python -m pytest -q -m "not docker and not ray" tests
# A real 2-node Ray cluster on this machine (needs the [ray] extra; skips without Ray, fails under CI).
if [ "${SKIP_RAY_TIER:-0}" != "1" ]; then
  python -m pytest -q -m ray tests
fi
if [ "${SKIP_DOCKER_TIER:-0}" != "1" ]; then
  bash scripts/docker-prereqs.sh
  python -m pytest -q -m docker tests
fi
