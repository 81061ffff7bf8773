"""The two-command demo's first command (``make demo``).

Starts the Oxen API emulator on 127.0.0.1, runs the example DAG with ``airflow dags test``
in a throwaway AIRFLOW_HOME (no API key, no network), downloads what it generated into
``.demo/output/`` and prints where everything is. Stops what it started, even on failure.

To run the same DAG against the real Oxen API instead, configure the ``oxen_default``
connection (host https://hub.oxen.ai, password = your API key) and run
``airflow dags test oxen_generate_images`` yourself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DEMO_KEY = "demo-key-not-a-secret"


def _airflow_env(home: Path, emulator_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW_CONN_OXEN_DEFAULT=json.dumps(
            {"conn_type": "oxen", "host": emulator_url, "password": DEMO_KEY, "extra": {"max_retries": 3}}
        ),
    )
    return env


def _xcoms(home: Path, dag_id: str) -> list[tuple[str, int, object]]:
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND key = 'return_value' "
            "ORDER BY task_id, map_index",
            (dag_id,),
        ).fetchall()
    return [(task_id, map_index, json.loads(value)) for task_id, map_index, value in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag", default="oxen_generate_images")
    parser.add_argument("--workdir", default=str(REPO / ".demo"))
    parser.add_argument("--render-seconds", type=float, default=1.5)
    args = parser.parse_args()

    from airflow_provider_oxen.emulator import start_emulator_process

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    home, output = workdir / "airflow-home", workdir / "output"
    home.mkdir(parents=True)
    output.mkdir(parents=True)

    emulator_args = ["--api-key", DEMO_KEY, "--render-seconds", str(args.render_seconds)]
    with start_emulator_process(emulator_args) as emulator:
        print(f">> Oxen emulator on {emulator.url}")
        env = _airflow_env(home, emulator.url)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        print(f">> airflow dags test {args.dag}  (AIRFLOW_HOME={home})")
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", args.dag],
            env=env,
            capture_output=True,
            text=True,
        )
        (workdir / "dags-test.log").write_text(run.stdout + run.stderr)
        elapsed = time.monotonic() - started
        if run.returncode != 0 or "state=failed" in run.stdout + run.stderr:
            print((run.stdout + run.stderr)[-4000:])
            print(f"!! the DAG run failed after {elapsed:.1f} s; full log: {workdir / 'dags-test.log'}")
            return 1
        print(f">> DAG run succeeded in {elapsed:.1f} s")

        with httpx.Client(timeout=30) as client:
            for task_id, map_index, value in _xcoms(home, args.dag):
                label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, dict) and item.get("result_url"):
                        target = (
                            output / f"{label}-{item['generation_id']}.{item.get('output_format') or 'img'}"
                        )
                        target.write_bytes(client.get(item["result_url"]).raise_for_status().content)
                        size = f"{item.get('width')}x{item.get('height')}"
                        print(f"   {label:<18} {size:>9}  {target.relative_to(REPO)}")
                    else:
                        print(f"   {label:<18} {item}")
        stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
        print(f">> emulator saw {stats.get('generations_created')} generation(s) created")
    print(f">> images in {output}; Airflow log in {workdir / 'dags-test.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
