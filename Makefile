.PHONY: demo test test-fast lint bootstrap

# The main job: the example DAG against the embedded Oxen emulator (no API key, no network).
demo: bootstrap
	@scripts/ensure_exiftool.sh
	.venv/bin/python scripts/demo.py

# The whole test suite: the fast layer plus the slow one (real Airflow clusters, the chaos soak,
# Airflow's CLI, the release artefacts, the browser, big files).
test: bootstrap
	@scripts/ensure_browser.sh
	@scripts/ensure_exiftool.sh
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" -n 2
	.venv/bin/python -m pytest -q -p no:cacheprovider -m slow

# Unit tests and integration tests against the emulator over real sockets (about 2 minutes).
test-fast: bootstrap
	@scripts/ensure_exiftool.sh
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" -n 2

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bootstrap:
	@scripts/bootstrap.sh

.PHONY: cluster soak soak-ci

# A production-shaped Airflow on this machine (PostgreSQL, Redis, CeleryExecutor with 2 workers,
# 2 triggerers, the Oxen emulator); installs what is missing, Ctrl-C stops it. docs/deployment.md
cluster: bootstrap
	.venv/bin/python scripts/cluster.py up

# The chaos soak at scale on that cluster: 328 mapped tasks, 1,291 images (about 15-20 minutes).
# The CI-sized soak (40 tasks, 2-4 minutes on 2 cores) is part of `make test`; alone:
soak-ci: bootstrap
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/production/test_chaos_soak.py

soak: bootstrap
	.venv/bin/python scripts/cluster.py soak --tasks 320 --images 4 --render-seconds 15 --timeout 3600
