#!/bin/sh
# Container entry point: `docker run IMAGE execute /experiment` runs `harness execute ...`;
# a command naming a program (`harness ...`, `python3 ...`, `sh ...`) runs that program.
set -eu
if [ "$#" -eq 0 ]; then
  exec harness --help
fi
case "$1" in
  -*) exec harness "$@" ;;
esac
if command -v "$1" >/dev/null 2>&1; then
  exec "$@"
fi
exec harness "$@"
