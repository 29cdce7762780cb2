#!/usr/bin/env bash
# Static security/cost checks of infra/ with checkov, for CI and for people.
#
#   bash infra/checkov.sh            # from anywhere; exit 0 clean, non-zero when a check fails
#
# checkov lives in its own venv under ${XDG_CACHE_HOME:-$HOME/.cache}/xray-checkov (it pins packages
# that conflict with the project's venv) and is installed there, at CHECKOV_VERSION, on first use.
# If it cannot be installed (offline, no package index), the script prints one SKIP line and exits 0,
# except under CI=true, where a scan that cannot run fails the run (exit 3): CI never passes unscanned.
#
# Checks run: checkov's terraform and secrets frameworks, plus this project's policies in
# infra/checkov-policies/ (checkov ships no checks for databricks_* resources). Nothing is sent
# anywhere: --skip-download keeps checkov from calling the Prisma Cloud API.
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/xray-checkov"
checkov="$venv/bin/checkov"

installed_version() {
    "$checkov" --version 2>/dev/null || true
}

if [ ! -x "$checkov" ] || [ "$(installed_version)" != "$CHECKOV_VERSION" ]; then
    echo "checkov.sh: installing checkov $CHECKOV_VERSION into $venv (first run only)" >&2
    mkdir -p "$(dirname "$venv")"
    log="$(mktemp "${TMPDIR:-/tmp}/xray-checkov-install.XXXXXX")"
    if ! { "$PYTHON" -m venv --clear "$venv" \
        && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "checkov==$CHECKOV_VERSION"; } >"$log" 2>&1; then
        rm -rf "$venv"
        if [ "${CI:-}" = "true" ]; then
            echo "checkov.sh: FAILED: could not install checkov $CHECKOV_VERSION (offline or no package index);" \
                "infra/ was NOT scanned, and CI=true does not pass without the scan. Install log: $log" >&2
            exit 3
        fi
        echo "checkov.sh: SKIP: could not install checkov $CHECKOV_VERSION (offline or no package index);" \
            "infra/ was NOT scanned. Install log: $log"
        exit 0
    fi
    rm -f "$log"
fi

cd "$infra_dir"
exec "$checkov" \
    --directory . \
    --framework terraform secrets \
    --external-checks-dir checkov-policies \
    --skip-path .terraform \
    --skip-download \
    --quiet \
    --compact
