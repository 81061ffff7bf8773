.PHONY: demo test lint bootstrap

# The main job: the example DAG against the embedded Oxen emulator (no API key, no network).
demo: bootstrap
	.venv/bin/python scripts/demo.py

# The whole test suite, including the real-Airflow end-to-end tests.
test: bootstrap
	@scripts/ensure_browser.sh
	.venv/bin/python -m pytest -q -p no:cacheprovider

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bootstrap:
	@scripts/bootstrap.sh
