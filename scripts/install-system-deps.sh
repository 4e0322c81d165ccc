#!/usr/bin/env bash
# Installs the Debian packages of the real components the test suite starts:
# Prometheus, Alertmanager, PostgreSQL and Chromium (for JupyterLab browser tests).
set -u
pkgs=(prometheus prometheus-alertmanager postgresql chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-system-deps: not root; cannot install ${missing[*]} (tests that need them will say so)" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "install-system-deps: apt-get update failed" >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/incidentbook-apt.log 2>&1 \
  || { echo "install-system-deps: apt-get install failed, see /tmp/incidentbook-apt.log" >&2; tail -20 /tmp/incidentbook-apt.log >&2; }
# The packages' services must not start on their own: the tests start them on free ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  (service "$svc" stop || true) >/dev/null 2>&1
done
exit 0
