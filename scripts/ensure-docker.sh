#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, without systemd.
#
# Idempotent: installs Debian/Ubuntu's docker.io only when dockerd is missing, starts dockerd in the
# background only when the engine does not answer, then polls `docker info` with a deadline.
# Used by .ci/run, `make test` and `make up`; safe to run again at any time.
set -euo pipefail

DEADLINE_S="${WAA_DOCKER_DEADLINE_S:-90}"
LOG="${WAA_DOCKERD_LOG:-/var/log/waa-dockerd.log}"

say() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if [ "$(id -u)" -ne 0 ] && ! engine_answers; then
  say "the engine does not answer and this script needs root to install or start it"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  say "installing Debian's docker.io (the engine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # iptables: the engine's NAT for published ports; the rest: the image builds (scripts/images.sh).
  apt-get install -y -qq --no-install-recommends docker.io iptables debootstrap ca-certificates >/dev/null
fi
for tool in debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null
  }
done

if engine_answers; then
  say "engine answers: $(docker info --format '{{.ServerVersion}}')"
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  say "starting dockerd in the background (log: $LOG)"
  # containerd is started by dockerd itself when it is not running.
  nohup dockerd >"$LOG" 2>&1 </dev/null &
fi

end=$(( $(date +%s) + DEADLINE_S ))
delay=0.1
until engine_answers; do
  if [ "$(date +%s)" -ge "$end" ]; then
    say "the engine did not answer within ${DEADLINE_S}s; last lines of $LOG:"
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  sleep "$delay"
  delay=$(awk -v d="$delay" 'BEGIN { d *= 2; if (d > 2) d = 2; print d }')
done
say "engine answers: $(docker info --format '{{.ServerVersion}}')"
