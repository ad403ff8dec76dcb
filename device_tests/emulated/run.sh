#!/usr/bin/env bash
# Parity tests on an emulated Raspberry Pi (arm64 Debian under qemu-user).
#
# What it proves: the zoo models built on an x86_64 workstation give the same raw
# outputs (within the tolerances documented in device_tests/test_parity.py) when run
# by the *runtime-only* install (numpy + ai-edge-litert + edgelite, no extras) on an
# aarch64 userland, where LiteRT/XNNPACK pick their ARM (NEON) kernels. It does not
# measure speed: qemu translates every instruction, so timings are meaningless and
# this script never reports them.
#
# Steps (each cached, so a re-run only refreshes edgelite, models and tests):
#   1. tools: debootstrap, qemu-user-static, binfmt-support (apt-get, when root);
#   2. binfmt_misc: mount it and enable qemu-aarch64 so the kernel runs arm64 ELF
#      files through qemu (needed by debootstrap's second stage, which execs dozens
#      of programs inside the chroot);
#   3. rootfs: debootstrap --foreign --arch=arm64 bookworm + second stage in the chroot;
#   4. venv in the rootfs: numpy + ai-edge-litert (same version as the host venv by
#      default, so a mismatch points at the CPU, not at a runtime upgrade) + pytest;
#   5. edgelite wheel built from this checkout (on the host, from a temp copy so the
#      tree is left untouched), installed with --no-deps: no vision/convert extras;
#   6. zoo models + golden files + device_tests/test_parity.py copied in; pytest run.
#
# Usage: device_tests/emulated/run.sh [--rebuild] [--prepare-only]
# Env:   EDGELITE_EMU_DIR      rootfs cache (default ~/.cache/edgelite/emulated-rootfs)
#        EDGELITE_CACHE_DIR    where the zoo models are (default ~/.cache/edgelite)
#        EDGELITE_LITERT_VERSION  ai-edge-litert version for the rootfs (default: host's)
#        DEBIAN_MIRROR         default http://deb.debian.org/debian
#        HOST_PYTHON           python used to build the wheel (default .venv/bin/python)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
EMU_DIR="${EDGELITE_EMU_DIR:-$HOME/.cache/edgelite/emulated-rootfs}"
ROOT="$EMU_DIR/bookworm-arm64"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${EDGELITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgelite}"
HOST_PYTHON="${HOST_PYTHON:-$REPO/.venv/bin/python}"
[ -x "$HOST_PYTHON" ] || HOST_PYTHON=python3
REBUILD=0
PREPARE_ONLY=0
for a in "$@"; do
  case "$a" in
    --rebuild) REBUILD=1 ;;
    --prepare-only) PREPARE_ONLY=1 ;;
    -h|--help) sed -n 2,30p "$0"; exit 0 ;;
    *) echo "unknown argument: $a (see --help)" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
log() { printf '[emulated %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount). Run: sudo $0"
[ "$(uname -m)" = x86_64 ] || [ "$(uname -m)" = aarch64 ] || die "unsupported host $(uname -m)"

# --- 1. tools ---------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
  log "installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
QEMU="$(command -v qemu-aarch64-static)"

# --- 2. binfmt_misc ---------------------------------------------------------------
BINFMT=0
if [ "$(uname -m)" = aarch64 ]; then
  BINFMT=native   # already arm64: no emulation needed
else
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 2>/dev/null || true
  if grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then BINFMT=1; fi
fi
if [ "$BINFMT" = 0 ]; then
  # Without binfmt only the first process runs under qemu; qemu-user does not follow
  # execve() into another arm64 program, so debootstrap --second-stage and pip (which
  # spawn subprocesses) cannot work. Say so instead of failing half-way.
  die "cannot register qemu-aarch64 with binfmt_misc (no CAP_SYS_ADMIN / unprivileged container?).
  Try on the host: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64
  A single binary can still be run explicitly: chroot ROOT /usr/bin/qemu-aarch64-static /bin/sh -c ..."
fi
log "binfmt: $BINFMT ($QEMU)"

# --- mounts, always undone ----------------------------------------------------------
MOUNTED=()
cleanup() {
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_chroot() {
  for d in proc sys dev; do
    mountpoint -q "$ROOT/$d" && continue
    case "$d" in
      proc) mount -t proc proc "$ROOT/proc" ;;
      *) mount --rbind "/$d" "$ROOT/$d"; mount --make-rslave "$ROOT/$d" ;;
    esac
    MOUNTED+=("$ROOT/$d")
  done
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
}
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 EDGELITE_CACHE_DIR=/opt/edgelite-cache PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"; }

# --- 3. rootfs ----------------------------------------------------------------------
if [ "$REBUILD" = 1 ] && [ -d "$ROOT" ]; then
  log "removing cached rootfs $ROOT"
  for d in proc sys dev; do umount -l "$ROOT/$d" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOT"
fi
mkdir -p "$EMU_DIR"
ROOTFS_CACHED=True
[ -e "$ROOT/.stage2" ] || ROOTFS_CACHED=False
if [ ! -e "$ROOT/.stage1" ]; then
  log "debootstrap --foreign $SUITE arm64 -> $ROOT"
  rm -rf --one-file-system "$ROOT"
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOT" "$MIRROR"
  touch "$ROOT/.stage1"
fi
# With binfmt's F flag the interpreter is pinned at registration, but a copy inside
# the rootfs also serves kernels/registrations without it and the explicit fallback.
[ "$BINFMT" = native ] || install -m 0755 "$QEMU" "$ROOT/usr/bin/qemu-aarch64-static"
if [ ! -e "$ROOT/.stage2" ]; then
  log "debootstrap --second-stage (inside the chroot, under qemu)"
  chroot "$ROOT" /debootstrap/debootstrap --second-stage
  touch "$ROOT/.stage2"
fi
mount_chroot
log "rootfs ready: $(in_root uname -m), $(in_root python3 -V)"

# --- 4. runtime venv ----------------------------------------------------------------
LITERT_VERSION="${EDGELITE_LITERT_VERSION:-$("$HOST_PYTHON" -c 'import importlib.metadata as m; print(m.version("ai-edge-litert"))' 2>/dev/null || true)}"
SPEC="ai-edge-litert${LITERT_VERSION:+==$LITERT_VERSION}"
if [ "$(cat "$ROOT/opt/venv/.spec" 2>/dev/null)" != "$SPEC" ]; then
  # The wheels are fetched by the *host's* pip (its index, proxy and CA settings
  # apply; resolving under qemu is slow) for the rootfs's platform, then installed
  # offline. Bookworm has glibc 2.36 and CPython 3.11.
  log "venv: numpy + $SPEC + pytest (aarch64 wheels fetched by the host's pip, installed offline)"
  rm -rf "$ROOT/opt/venv" "$ROOT/opt/wheels"
  plat=()
  for v in 36 35 34 31 28 27 17; do plat+=(--platform "manylinux_2_${v}_aarch64"); done
  "$HOST_PYTHON" -m pip download -q --only-binary=:all: "${plat[@]}" --platform manylinux2014_aarch64 \
    --python-version 3.11 --implementation cp --abi cp311 -d "$ROOT/opt/wheels" numpy "$SPEC" pytest
  in_root python3 -m venv /opt/venv
  in_root /opt/venv/bin/pip install -q --no-index --find-links /opt/wheels numpy "$SPEC" pytest
  echo "$SPEC" > "$ROOT/opt/venv/.spec"
fi

# --- 5. edgelite, runtime only ------------------------------------------------------
WORK="$(mktemp -d)"
trap 'cleanup; rm -rf "$WORK"' EXIT
log "building the edgelite wheel from $REPO"
mkdir -p "$WORK/src" "$WORK/dist"
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/sdk" "$REPO/converters" "$WORK/src/"
[ -e "$REPO/LICENSE" ] && cp "$REPO/LICENSE" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$HOST_PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" >/dev/null
WHEEL="$(ls "$WORK/dist"/edgelite-*.whl)"
mkdir -p "$ROOT/opt/dist" && rm -f "$ROOT/opt/dist"/edgelite-*.whl && cp "$WHEEL" "$ROOT/opt/dist/"
in_root /opt/venv/bin/pip install -q --no-deps --force-reinstall "/opt/dist/$(basename "$WHEEL")"

# --- which qemu runs the runtime ----------------------------------------------------
# Debian bookworm's qemu 7.2 segfaults inside ai-edge-litert 2.x's interpreter
# constructor (any -cpu model, with or without XNNPACK; litert 1.4 runs), and qemu
# 10 runs it. So: probe with the binfmt qemu; if the probe crashes, fetch the static
# qemu-aarch64 of Debian trixie's qemu-user (apt-get download with a private sources
# list, nothing installed on the host) and run the tests *explicitly* through it:
# chroot ROOT /usr/bin/qemu-aarch64-new -cpu MODEL /opt/venv/bin/python ... (pytest
# spawns no arm64 subprocess, so no binfmt is needed for that part).
#
# CPU models (EDGELITE_EMU_CPUS): cortex-a72 = Raspberry Pi 4 (NEON, no dot
# product), cortex-a76 = Raspberry Pi 5 (NEON + dot product): XNNPACK picks
# different int8 kernels for the two, and both must match the golden outputs.
CPUS="${EDGELITE_EMU_CPUS:-cortex-a72 cortex-a76}"
QEMU_RUN=""   # path inside the rootfs of an explicitly invoked qemu, empty = binfmt's
py_arm() {
  local cpu="$1"; shift
  local rep="EDGELITE_PARITY_REPORT=/opt/parity/report-$cpu.jsonl"
  if [ "$BINFMT" = native ]; then in_root "$rep" /opt/venv/bin/python "$@"
  elif [ -n "$QEMU_RUN" ]; then in_root "$rep" "$QEMU_RUN" -cpu "$cpu" /opt/venv/bin/python "$@"
  else in_root "$rep" QEMU_CPU="$cpu" /opt/venv/bin/python "$@"; fi
}
PROBE='import edgelite.doctor as d
r = d.report()
ok = [b["name"] + " " + str(b["version"]) for b in r["backends"] if b["ok"]]
assert ok, r["backends"]
print("backends ok:", ok, "| cpu features:", r["cpu"].get("features"), "|", r["platform"])'
first_cpu="${CPUS%% *}"
if [ "$BINFMT" != native ] && ! py_arm "$first_cpu" -c "$PROBE" >"$WORK/probe.log" 2>&1; then
  log "the runtime does not run under $("$QEMU" --version | head -1) ($(tail -1 "$WORK/probe.log")); using a newer qemu"
  if [ -n "${EDGELITE_QEMU:-}" ]; then
    NEWQ="$EDGELITE_QEMU"
  else
    QDIR="$EMU_DIR/qemu-trixie"
    NEWQ="$QDIR/qemu-aarch64"
    if [ ! -x "$NEWQ" ]; then
      log "fetching qemu-user from Debian trixie into $QDIR"
      rm -rf "$QDIR"; mkdir -p "$QDIR/lists/partial" "$QDIR/deb"
      echo "deb $MIRROR trixie main" > "$QDIR/sources.list"
      APTO=(-o Dir::Etc::SourceList="$QDIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$QDIR/lists" -o APT::Sandbox::User=root)
      apt-get "${APTO[@]}" update -q >/dev/null
      (cd "$QDIR/deb" && apt-get "${APTO[@]}" download -q qemu-user >/dev/null)
      dpkg-deb -x "$QDIR"/deb/qemu-user_*.deb "$QDIR/x"
      install -m 0755 "$QDIR/x/usr/bin/qemu-aarch64" "$NEWQ"
      rm -rf "$QDIR/x" "$QDIR/deb" "$QDIR/lists"
    fi
  fi
  install -m 0755 "$NEWQ" "$ROOT/usr/bin/qemu-aarch64-new"
  QEMU_RUN=/usr/bin/qemu-aarch64-new
  py_arm "$first_cpu" -c "$PROBE" >"$WORK/probe.log" 2>&1 || { cat "$WORK/probe.log"; die "the runtime does not run under $("$NEWQ" --version | head -1) either"; }
fi
QEMU_DESC="$([ "$BINFMT" = native ] && echo "native arm64" || { [ -n "$QEMU_RUN" ] && "$ROOT$QEMU_RUN" --version | head -1 || "$QEMU" --version | head -1; })"
log "runtime probe ($QEMU_DESC, -cpu $first_cpu): $(tail -1 "$WORK/probe.log")"
# Prove the install is runtime-only: no TensorFlow, no OpenCV in the rootfs venv.
py_arm "$first_cpu" -c '
import importlib.util as u
bad = [m for m in ("tensorflow", "cv2", "onnx", "onnxruntime", "PIL") if u.find_spec(m)]
assert not bad, f"not a runtime-only install: {bad}"
print("runtime-only install: no tensorflow, cv2, onnx, onnxruntime, PIL")'
[ "$PREPARE_ONLY" = 1 ] && { log "prepared (--prepare-only): not running the tests"; exit 0; }

# --- 6. models + tests --------------------------------------------------------------
shopt -s nullglob
models=("$CACHE"/models/*.tflite)
[ ${#models[@]} -gt 0 ] || die "no zoo models in $CACHE/models. Build them first (edgelite models build), or set EDGELITE_CACHE_DIR."
rm -rf "$ROOT/opt/edgelite-cache" "$ROOT/opt/parity"  # fresh models, tests and reports every run
mkdir -p "$ROOT/opt/edgelite-cache/models" "$ROOT/opt/parity"
for m in "${models[@]}"; do
  b="${m%.tflite}"
  cp "$m" "$ROOT/opt/edgelite-cache/models/"
  for side in "$b.json" "$b.golden.npz"; do [ -e "$side" ] && cp "$side" "$ROOT/opt/edgelite-cache/models/"; done
done
cp "$REPO/device_tests/test_parity.py" "$REPO/device_tests/conftest.py" "$ROOT/opt/parity/"
log "copied ${#models[@]} model(s) + golden files; parity tests under emulation, CPU models: $CPUS"
rc=0
summary=()
reports=()
for cpu in $CPUS; do
  T_TEST=$(date +%s)
  set +e
  py_arm "$cpu" -m pytest -q -m device -p no:cacheprovider -rs --rootdir /opt/parity /opt/parity/test_parity.py \
    2>&1 | tee "$WORK/pytest-$cpu.log"
  r=${PIPESTATUS[0]}
  set -e
  line="$(grep -E '[0-9]+ (passed|failed|skipped)' "$WORK/pytest-$cpu.log" | tail -1)"
  # all skipped (e.g. no golden files) is not a pass: nothing was compared
  if [ $r = 0 ] && ! grep -q ' passed' <<<"$line"; then r=1; line="$line (nothing compared)"; fi
  summary+=("$cpu: $([ $r = 0 ] && echo PASSED || echo "FAILED (exit $r)") -- $line -- $(( $(date +%s) - T_TEST ))s")
  [ $r = 0 ] || rc=$r
  [ -e "$ROOT/opt/parity/report-$cpu.jsonl" ] && cp "$ROOT/opt/parity/report-$cpu.jsonl" "$WORK/" \
    && reports+=("$WORK/report-$cpu.jsonl")
done
log "summary ($QEMU_DESC):"
for s in "${summary[@]}"; do log "  $s"; done
TOTAL=$(( $(date +%s) - T0 ))
log "total ${TOTAL}s (timings under emulation say nothing about a Pi's speed)"
# A readable report next to the device results (EDGELITE_EMU_RESULTS to put it elsewhere).
OUT="${EDGELITE_EMU_RESULTS:-$REPO/device_tests/results/emulated-qemu-aarch64}"
"$HOST_PYTHON" - "$WORK/meta.json" <<PYEOF
import json, sys, datetime, platform
json.dump({"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "host": f"{platform.machine()} {platform.platform()}", "suite": "$SUITE",
           "python": "$(in_root python3 -V 2>&1 | cut -d' ' -f2)",
           "runtime": "numpy + $SPEC + edgelite $(basename "$WHEEL") (--no-deps)",
           "qemu": "$QEMU_DESC", "cpus": "$CPUS".split(), "total_s": $TOTAL,
           "rootfs_cached": $ROOTFS_CACHED, "result": "$([ $rc = 0 ] && echo PASSED || echo FAILED)",
           "per_cpu": [s for s in """$(printf '%s\n' "${summary[@]}")""".splitlines() if s]},
          open(sys.argv[1], "w"), indent=1)
PYEOF
[ ${#reports[@]} -gt 0 ] && "$HOST_PYTHON" "$HERE/summarize.py" "$OUT" "$WORK/meta.json" "${reports[@]}"
exit $rc
