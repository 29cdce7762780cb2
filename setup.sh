#!/usr/bin/env bash
# Set up xray-lakehouse on this machine, then optionally run something:
#   ./setup.sh          set up only (Java check/install, virtualenv in .venv, package + dev tools, and the
#                       Delta Lake jars of the native engine in ~/.cache/xray-lakehouse/jars; offline, one
#                       line says how to add them and the service uses delta-rs)
#   ./setup.sh demo     set up, then run `xray demo` (the whole service on a synthetic sample, offline)
#   ./setup.sh test     set up, then run the test suite
# Environment: PYTHON (interpreter to build the venv with, default python3), XRAY_VENV (default .venv),
#   XRAY_EXTRAS (more extras to install, comma-separated: e.g. cnn, the convolutional model family; CI sets it).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${XRAY_VENV:-.venv}

java_major() {
  local java=java
  [ -n "${JAVA_HOME:-}" ] && java="$JAVA_HOME/bin/java"
  command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
  "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\(\.[0-9]*\)*.*/\1/p' | head -n 1
}

ensure_java() {
  local major
  major=$(java_major)
  if [ "${major:-0}" -ge 17 ] 2>/dev/null; then
    return
  fi
  echo "setup: Spark needs Java 17+ (found: ${major:-none})."
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing openjdk-17-jre-headless with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    major=$(java_major)
    [ "${major:-0}" -ge 17 ] && return
  fi
  echo "setup: error: install a Java 17+ runtime and run ./setup.sh again:" >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  macOS:         brew install openjdk@17 && export JAVA_HOME=\$(brew --prefix openjdk@17)" >&2
  echo "  other:         install a JDK 17+ (e.g. Eclipse Temurin) and set JAVA_HOME" >&2
  exit 1
}

ensure_venv() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: error: Python 3.11+ is required (PYTHON=$PYTHON)" >&2
    exit 1
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[local,dev${XRAY_EXTRAS:+,$XRAY_EXTRAS}]"
}

ensure_delta_jars() {
  # Under CI the native engine must be there: its half of the suite would otherwise not run.
  local require=""
  [ "${CI:-}" = "true" ] && require="--require"
  "$VENV/bin/python" -m streaming.lakehouse.deltajars $require
}

ensure_java
ensure_venv
ensure_delta_jars
echo "setup: ready ($("$VENV/bin/xray" --help >/dev/null && echo "xray installed in $VENV"))"

case "${1:-}" in
  demo) shift; exec "$VENV/bin/xray" demo "$@" ;;
  test) shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  "") ;;
  *) echo "setup: unknown action '$1' (use: demo, test)" >&2; exit 2 ;;
esac
