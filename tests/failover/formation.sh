#!/usr/bin/env bash
# A pg_auto_failover formation on this machine for the failover test: a
# monitor and two data nodes, each with a private port on 127.0.0.1 and its
# sockets in DIR/run, all run as the PostgreSQL user (scripts/lib.sh pg_user).
#   formation.sh start DIR        make and start it; prints the formation's URI
#   formation.sh uri DIR          the multi-host URI of the formation's database
#   formation.sh primary DIR      the name of the node that is primary now
#   formation.sh kill-primary DIR SIGKILL the primary's postgres and its pg_autoctl;
#                                 prints the node's name
#   formation.sh restart NODE DIR start pg_autoctl of a killed node again (it rejoins)
#   formation.sh switchover DIR   a planned switchover (the primary demoted while running)
#   formation.sh wait-healthy DIR one primary and one secondary, within 180 s
#   formation.sh stop DIR         stop everything it started (idempotent)
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"

cmd="$1"
dir="$2"
[ "$cmd" = restart ] && { node="$2"; dir="$3"; }

# pg_autoctl keeps its configuration and state under XDG_*; keep them in DIR.
pgenv() {
  as_pg env XDG_CONFIG_HOME="$dir/xdg/config" XDG_DATA_HOME="$dir/xdg/data" \
    XDG_RUNTIME_DIR="$dir/xdg/run" PG_REGRESS_SOCK_DIR="$dir/run" PGHOST="$dir/run" \
    PATH="$PG_BIN:$PATH" "$@"
}

monitor_uri() { pgenv pg_autoctl show uri --pgdata "$dir/monitor" --formation monitor; }

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts `pg_autoctl run` for the node in DIR/NAME in the background; its
# pid goes to DIR/NAME.pid, its log to DIR/NAME.log.
run_node() {
  local name="$1" pid=""
  # setsid: its own session and process group, which kill and stop end as a
  # whole. setsid forks, so its pid is read back from the process table.
  pgenv setsid pg_autoctl run --pgdata "$dir/$name" >>"$dir/$name.log" 2>&1 &
  for _ in $(seq 100); do
    pid="$(pgrep -o -u "$(pg_user)" -x -f "pg_autoctl run --pgdata $dir/$name" || true)"
    [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "$pid" ] || die "pg_autoctl of $name did not start"
  echo "$pid" >"$dir/$name.pid"
}

# SIGKILL (or `sig`) to the node's pg_autoctl and its children (one process
# group), and to its postgres.
signal_node() {
  local name="$1" sig="$2" pid
  [ -f "$dir/$name.pid" ] || return 0
  pid="$(cat "$dir/$name.pid")"
  kill "-$sig" -- "-$pid" 2>/dev/null || true
  if [ -f "$dir/$name/postmaster.pid" ]; then
    kill "-$sig" "$(head -1 "$dir/$name/postmaster.pid")" 2>/dev/null || true
  fi
}

# The lines of `pg_autoctl show state` for the data nodes: NAME STATE.
states() {
  pgenv pg_autoctl show state --pgdata "$dir/monitor" --json 2>/dev/null |
    python3 -c 'import json,sys
for n in json.load(sys.stdin): print(n["nodename"], n["current_group_state"], n["assigned_group_state"])' \
    2>/dev/null
}

# The formation's URL for libpq, in the keyword form the tests' harness
# reads (database after "///"): both nodes, and only the primary accepted.
# pg_autoctl show uri --formation default prints the same as a URI.
uri() {
  local hosts ports
  hosts="$(pgenv pg_autoctl show state --pgdata "$dir/monitor" --json |
    python3 -c 'import json,sys; print(",".join(n["nodehost"] for n in json.load(sys.stdin)))')"
  ports="$(pgenv pg_autoctl show state --pgdata "$dir/monitor" --json |
    python3 -c 'import json,sys; print(",".join(str(n["nodeport"]) for n in json.load(sys.stdin)))')"
  echo "postgresql:///postgres?host=$hosts&port=$ports&user=$(pg_user)&target_session_attrs=read-write"
}

wait_healthy() {
  local deadline=$((SECONDS + ${1:-180}))
  while [ $SECONDS -lt $deadline ]; do
    local s
    s="$(states || true)"
    if [ "$(grep -c ' primary primary$' <<<"$s")" = 1 ] &&
       [ "$(grep -c ' secondary secondary$' <<<"$s")" = 1 ]; then
      return 0
    fi
    sleep 0.5
  done
  echo "formation not healthy in time:" >&2
  states >&2 || true
  return 1
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown "$(pg_user)" "$dir"
    as_pg mkdir -p -m 700 "$dir/run" "$dir/xdg/config" "$dir/xdg/data" "$dir/xdg/run"
    common=(--pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl)
    pgenv pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$(free_port)" \
      "${common[@]}" >>"$dir/monitor.log" 2>&1
    # create monitor has no --listen: bind 127.0.0.1 only, not every address.
    pgenv pg_autoctl config set --pgdata "$dir/monitor" postgresql.listen_addresses 127.0.0.1 \
      >>"$dir/monitor.log" 2>&1
    # Failover within seconds rather than the defaults' half minute: with
    # the primary's pg_autoctl dead, the monitor waits primary_demote_timeout
    # (30 s) before it promotes the standby, so that a primary cut off from
    # it has demoted itself first (after the keepers' network_partition_timeout,
    # 20 s). Both are shortened here, keeping demote > partition
    # (docs/OPERATIONS.md, "PostgreSQL failover").
    as_pg tee -a "$dir/monitor/postgresql.conf" >/dev/null <<CONF
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.primary_demote_timeout = 5000
CONF
    run_node monitor
    for i in $(seq 100); do monitor_uri >/dev/null 2>&1 && break; sleep 0.2; done
    for name in node1 node2; do
      pgenv pg_autoctl create postgres --pgdata "$dir/$name" --pgport "$(free_port)" \
        --name "$name" --dbname lockbox --monitor "$(monitor_uri)" --listen 127.0.0.1 \
        "${common[@]}" >>"$dir/$name.log" 2>&1
      pgenv pg_autoctl config set --pgdata "$dir/$name" timeout.network_partition_timeout 3 \
        >>"$dir/$name.log" 2>&1
      run_node "$name"
      # The second node clones the first: let the first be primary first.
      [ "$name" = node1 ] && for i in $(seq 300); do
        states | grep -q '^node1 single single$' && break; sleep 0.2; done
    done
    wait_healthy 180
    uri
    ;;
  uri)
    uri
    ;;
  primary)
    states | awk '$2 == "primary" { print $1 }'
    ;;
  kill-primary)
    name="$(states | awk '$2 == "primary" && $3 == "primary" { print $1 }')"
    [ -n "$name" ] || { echo "no primary" >&2; exit 1; }
    signal_node "$name" KILL
    echo "$name"
    ;;
  restart)
    run_node "$node"
    ;;
  switchover)
    # Planned: the primary is demoted while it runs (its postgres stopped
    # fast), the standby promoted; waits until it is done.
    pgenv pg_autoctl perform switchover --pgdata "$dir/monitor" --formation default --group 0 \
      >>"$dir/switchover.log" 2>&1
    ;;
  wait-healthy)
    wait_healthy 180
    ;;
  stop)
    for name in node1 node2 monitor; do signal_node "$name" TERM; done
    sleep 2
    for name in node1 node2 monitor; do
      signal_node "$name" KILL
      # Whatever postgres is left (its pg_autoctl gone first) stops by its pid file.
      if [ -f "$dir/$name/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/$name" -m immediate -w stop >/dev/null 2>&1 || true
      fi
    done
    ;;
  *) die "unknown command $cmd" ;;
esac
