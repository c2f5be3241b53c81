#!/usr/bin/env bash
# Install everything raylens needs on a fresh Debian/Ubuntu machine: Prometheus, promtool,
# Alertmanager and amtool from the distribution, and the raylens package in ./.venv.
# Usage: scripts/setup.sh [--test|--demo]   (--test: test extras; --demo: Ray for `raylens up`)
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v prometheus >/dev/null || need_packages+=(prometheus)
command -v promtool >/dev/null || need_packages+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || need_packages+=(prometheus-alertmanager)
command -v amtool >/dev/null || need_packages+=(prometheus-alertmanager)
# Probes Serve routes from outside for uptime (Prometheus' serve-probe job, provisioning/blackbox/).
command -v prometheus-blackbox-exporter >/dev/null || need_packages+=(prometheus-blackbox-exporter)
command -v openssl >/dev/null || need_packages+=(openssl)
if [ "${1:-}" = "--test" ]; then
  command -v prometheus-node-exporter >/dev/null || need_packages+=(prometheus-node-exporter)
  # tests/test_dashboards.py validates docker-compose.yml offline with `docker-compose config -q`.
  command -v docker-compose >/dev/null || need_packages+=(docker-compose)
  # tests/test_victoriametrics.py: Prometheus remote-writes to it (the scale-out path).
  command -v victoria-metrics >/dev/null || need_packages+=(victoria-metrics)
  # tests/test_kubernetes.py renders deploy/kubernetes/ with `kubectl kustomize` (offline, no cluster).
  command -v kubectl >/dev/null || need_packages+=(kubernetes-client)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  packages=$(printf '%s\n' "${need_packages[@]}" | sort -u | tr '\n' ' ')
  echo "setup: installing $packages(Debian packages; they start no service)"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $packages
fi
for tool in prometheus promtool amtool; do
  command -v "$tool" >/dev/null || { echo "setup: $tool still missing after install" >&2; exit 1; }
done

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
case "${1:-}" in
  --test) extras="[test]" ;;   # everything the tests use, Ray included
  --demo) extras="[demo]" ;;   # what `raylens up` needs for its local Ray head and demo jobs
  *) extras="" ;;
esac
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
echo "setup: ok ($(.venv/bin/raylens --version), $(prometheus --version 2>&1 | head -1))"
