#!/usr/bin/env bash
# Run `xray stream --once` and `xray retrain` on a throw-away Spark standalone cluster on this machine.
#
# Usage:
#   scripts/standalone_cluster.sh --lakehouse DIR [--workers W] [--cores N] [--memory 2g] [--python PY]
#                                 [--skip-retrain] [--run "XRAY ARGS"]... [--keep-logs]
#                                 [-- EXTRA spark-submit OPTIONS]
#
# What it does:
#   1. starts a standalone master and W workers (default 1) of N cores each (default 2) on 127.0.0.1 (free
#      ports, web UIs included) with the `spark-class` launcher shipped inside the pyspark package (no
#      separate Spark install needed);
#   2. waits until every worker has registered with the master;
#   3. submits `xray stream --once --lakehouse DIR` and then `xray retrain --lakehouse DIR` to the cluster
#      (or, given --run "ARGS" once or more, `xray ARGS --lakehouse DIR` for each, in order) with
#      spark-submit (driver in client mode, executors on the worker, Python workers on the interpreter of
#      --python, by default the repository's .venv), with Delta Lake's jars (driver and executors) when
#      ./setup.sh fetched them: the native `delta` engine is then available, as on Databricks;
#   4. checks with the master's JSON status page that each application really ran on the cluster;
#   5. stops workers and master on exit, whatever happened (also on Ctrl-C).
#
# The lakehouse must be on a path every node sees; here there is one node, so any local path works.
# Logs (master, worker, executors' stderr under the worker directory) go to a temporary folder that is
# deleted on exit unless --keep-logs is given or a step failed; its path is printed.
#
# Environment: JAVA_HOME (optional; Java 17+ on PATH otherwise), SPARK_LOCAL_IP (default 127.0.0.1).
# Exit status: 0 when both applications succeeded on the cluster, non-zero otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

lakehouse=""
workers=1
cores=2
memory=2g
python="${XRAY_CLUSTER_PYTHON:-$repo/.venv/bin/python}"
skip_retrain=0
runs=()
keep_logs=0
extra_submit=()

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --lakehouse) lakehouse="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --cores) cores="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --skip-retrain) skip_retrain=1; shift ;;
    --run) runs+=("$2"); shift 2 ;;
    --keep-logs) keep_logs=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra_submit=("$@"); break ;;
    *) echo "standalone_cluster.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$lakehouse" ]; then
  echo "standalone_cluster.sh: --lakehouse DIR is required (see --help)" >&2
  exit 2
fi
if [ ! -x "$python" ]; then
  echo "standalone_cluster.sh: no Python at $python; run ./setup.sh first or pass --python" >&2
  exit 2
fi
mkdir -p "$lakehouse"
lakehouse="$(cd "$lakehouse" && pwd)"

spark_home="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME="$spark_home"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export SPARK_NO_DAEMONIZE=1
# Driver and executors' Python workers run the interpreter that has the xray package installed.
export PYSPARK_PYTHON="$python"
export PYSPARK_DRIVER_PYTHON="$python"

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work="$(mktemp -d "${TMPDIR:-/tmp}/xray-standalone.XXXXXX")"
master_pid=""
worker_pids=()
failed=1

cleanup() {
  local status=$?
  # Worker first (it stops its executors), then master. Only the processes started here are signalled.
  for pid in "${worker_pids[@]}" "$master_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$keep_logs" = 1 ] || [ "$failed" = 1 ]; then
    echo "standalone_cluster.sh: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

master_port="$(free_port)"
master_ui="$(free_port)"
master_url="spark://127.0.0.1:$master_port"
status_url="http://127.0.0.1:$master_ui/json/"

echo "==> starting master $master_url (UI http://127.0.0.1:$master_ui)"
"$spark_home/bin/spark-class" org.apache.spark.deploy.master.Master \
  --host 127.0.0.1 --port "$master_port" --webui-port "$master_ui" >"$work/master.log" 2>&1 &
master_pid=$!

# The master's JSON status page: workers and applications. Prints one field; empty while unreachable.
master_status() {
  "$python" - "$status_url" "$1" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
try:
    status = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
except Exception:
    sys.exit(0)
field = sys.argv[2]
if field == "alive_workers":
    print(sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE"))
elif field == "finished_apps":
    print(" ".join(f"{a['id']}:{a.get('state')}" for a in status.get("completedapps", [])))
PY
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "standalone_cluster.sh: timed out waiting for $what; see $work" >&2
      return 1
    fi
    if ! kill -0 "$master_pid" 2>/dev/null; then
      echo "standalone_cluster.sh: the master exited; see $work/master.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

master_up() { [ -n "$(master_status alive_workers)" ]; }
workers_registered() { [ "$(master_status alive_workers)" -ge "$workers" ] 2>/dev/null; }

wait_for 120 "the master" master_up

for n in $(seq 1 "$workers"); do
  echo "==> starting worker $n of $workers ($cores cores, $memory) with work dir $work/worker-$n"
  "$spark_home/bin/spark-class" org.apache.spark.deploy.worker.Worker "$master_url" \
    --host 127.0.0.1 --cores "$cores" --memory "$memory" --webui-port "$(free_port)" \
    --work-dir "$work/worker-$n" >"$work/worker-$n.log" 2>&1 &
  worker_pids+=("$!")
done

wait_for 120 "$workers worker(s) to register" workers_registered
echo "==> $workers worker(s) registered"

# Spark's own INFO chatter would bury the xray output: warnings and errors only (the xray log stays INFO).
cat >"$work/log4j2.properties" <<'PROPS'
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
PROPS

# spark-submit runs Python applications from a .py file; a two-line launcher calls the xray CLI.
launcher="$work/xray_app.py"
cat >"$launcher" <<'PY'
import sys

from streaming.cli import main

sys.exit(main())
PY

# Delta Lake's jars from the user's cache (streaming/lakehouse/deltajars.py), given to spark-submit: a session
# that already exists when xray starts cannot load jars any more.
delta_submit=()
delta_classpath="$("$python" -m streaming.lakehouse.deltajars --classpath 2>/dev/null || true)"
if [ -n "$delta_classpath" ]; then
  delta_submit=(--jars "$delta_classpath"
    --conf "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
    --conf "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog")
  echo "==> Delta Lake jars: $(echo "$delta_classpath" | tr ',' '\n' | wc -l) from $(dirname "${delta_classpath%%,*}")"
fi

submit() {  # submit NAME XRAY-ARGS...
  local name="$1"
  shift
  local before
  before="$(master_status finished_apps | wc -w)"
  echo "==> spark-submit xray $*"
  # --master is given to xray too: its session factory would otherwise build a local[*] session.
  "$spark_home/bin/spark-submit" \
    --master "$master_url" \
    --name "xray-$name" \
    --conf "spark.executorEnv.PYSPARK_PYTHON=$python" \
    --conf "spark.pyspark.python=$python" \
    --conf "spark.pyspark.driver.python=$python" \
    --conf "spark.driver.host=127.0.0.1" \
    --conf "spark.executor.memory=1g" \
    --conf "spark.ui.enabled=false" \
    --driver-java-options "-Dlog4j2.configurationFile=file:$work/log4j2.properties" \
    "${delta_submit[@]}" \
    "${extra_submit[@]}" \
    "$launcher" "$@" --lakehouse "$lakehouse" --master "$master_url"
  # The application must show up as finished on the master: proof it ran on the cluster, not locally.
  wait_for 30 "application xray-$name to finish on the master" apps_finished_more_than "$before"
}

apps_finished_more_than() { [ "$(master_status finished_apps | wc -w)" -gt "$1" ]; }

cd "$repo"
if [ "${#runs[@]}" -gt 0 ]; then
  for run in "${runs[@]}"; do
    read -r -a run_args <<<"$run"
    submit "${run_args[0]}" "${run_args[@]}"
  done
else
  submit stream stream --once
  if [ "$skip_retrain" = 0 ]; then
    submit retrain retrain
  fi
fi

echo "==> applications on the master: $(master_status finished_apps)"
failed=0
echo "==> done; stopping worker and master"
