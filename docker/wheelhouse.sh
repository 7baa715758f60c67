#!/usr/bin/env bash
# Fills a wheelhouse (a folder of wheels) for one image variant from its hash-locked file, on
# the host, so that the image build needs no network. Skips the download when the folder was
# already made from the same lock (its .lock-sha256 stamp matches).
#   usage: docker/wheelhouse.sh cpu|cuda [DIR]     (DIR defaults to wheelhouse/<variant>)
# Extra pip options (an index, say) can come through PIP_* variables, e.g.
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu docker/wheelhouse.sh cpu
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT=${1:?usage: docker/wheelhouse.sh cpu|cuda [DIR]}
DIR=${2:-wheelhouse/$VARIANT}
LOCK=docker/requirements-$VARIANT.lock
PYTHON=${PYTHON:-python3}
[ -f "$LOCK" ] || { echo "wheelhouse: no lock file $LOCK (variants: cpu, cuda)" >&2; exit 2; }
want=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ -f "$DIR/.lock-sha256" ] && [ "$(cat "$DIR/.lock-sha256")" = "$want" ]; then
  echo "wheelhouse: $DIR already matches $LOCK"
  exit 0
fi
mkdir -p "$DIR"
rm -f "$DIR/.lock-sha256"
# The image runs CPython 3.11 on Linux x86-64, whatever the host is.
platforms=()
for n in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
"$PYTHON" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
  --implementation cp --python-version 3.11 "${platforms[@]}" \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 \
  -r "$LOCK" -d "$DIR" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# Only what the lock names stays: a stale wheel would be ignored by pip but bloat the context.
"$PYTHON" - "$LOCK" "$DIR" <<'PY'
import pathlib, re, sys
lock, folder = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
names = {re.sub(r"[-_.]+", "_", m.group(1)).lower() + "-" + m.group(2)
         for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock.read_text(), re.M)}
for wheel in folder.glob("*.whl"):
    parts = wheel.name.split("-")
    if re.sub(r"[-_.]+", "_", parts[0]).lower() + "-" + parts[1] not in names:
        wheel.unlink()
PY
echo "$want" > "$DIR/.lock-sha256"
echo "wheelhouse: $DIR filled from $LOCK ($(du -sh "$DIR" | cut -f1))"
