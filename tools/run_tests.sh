#!/usr/bin/env bash
# The README's test command: set up .venv (idempotent), install Slurm for tests/test_slurm.py
# where apt-get can (root, e.g. CI; elsewhere those tests are skipped and say why), run the tests.
# Where Slurm is then installed, a local cluster that fails to start fails those tests with its logs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
SLURM_PACKAGES=(slurmctld slurmd slurm-client munge)
if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[run_tests] installing ${SLURM_PACKAGES[*]} (apt-get) for the Slurm tests"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends "${SLURM_PACKAGES[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        apt-get install -y -qq --no-install-recommends "${SLURM_PACKAGES[@]}" >/dev/null 2>&1; }; } ||
      echo "[run_tests] note: apt-get could not install ${SLURM_PACKAGES[*]}; tests/test_slurm.py will be skipped"
  else
    echo "[run_tests] note: Slurm is not installed and apt-get needs root; tests/test_slurm.py will be skipped"
  fi
fi
if [ "$(id -u)" = 0 ] && { command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; }; then
  export FDROP_REQUIRE_SLURM=1  # Slurm is here and can run: a cluster that does not start fails the tests
fi
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider tests "$@"
