#!/usr/bin/env bash
# scripts/run.sh - installs what is missing, builds, starts a private
# redis-server (data under var/redis), and runs notifd in the foreground on
# config/notifd.json, pointed at that Redis. Ctrl-C stops both.
#
#   scripts/run.sh [extra notifd options]
#   NOTIFD_CONFIG=my.json REDIS_PORT=6390 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_packages "${notifd_packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"

config=${NOTIFD_CONFIG:-config/notifd.json}
redis_port=${REDIS_PORT:-6390}
mkdir -p var/redis var/spool
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$PWD/var/redis" \
  --save 300 100 --appendonly no --logfile "$PWD/var/redis/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

# The private Redis port replaces redis.port from the config file.
run_config=var/notifd.run.json
python3 - "$config" "$redis_port" "$run_config" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("redis", {})["port"] = int(sys.argv[2])
cfg["redis"].pop("unix", None)
json.dump(cfg, open(sys.argv[3], "w"), indent=2)
PY
echo "redis-server on 127.0.0.1:$redis_port (data in var/redis); notifd config: $run_config" >&2
./build/notifd -c "$run_config" "$@" &
notifd_pid=$!
trap 'kill -TERM "$notifd_pid" 2>/dev/null; wait "$notifd_pid" 2>/dev/null; kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true' EXIT INT TERM
wait "$notifd_pid"
