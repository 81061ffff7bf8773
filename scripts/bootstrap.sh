#!/usr/bin/env bash
# Create .venv (once) and install the provider with its test/demo extras into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# uv resolves Airflow's large dependency tree in seconds instead of minutes.
if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  [ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
  UV=.venv/bin/uv
fi
echo ">> installing airflow-provider-oxen[test] into .venv"
# Bytecode compiled at install, as pip and Airflow's images do: without it (and with
# PYTHONDONTWRITEBYTECODE set, as on CI) every Airflow process compiles Airflow from source,
# seconds per task process, which would be measured as task start-up.
"$UV" pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[test]"
.venv/bin/python -m compileall -q airflow_provider_oxen
touch "$stamp"
