"""Starting and stopping the emulator: as a child process (the CLI) and in a thread."""

from __future__ import annotations

import signal

import httpx
import pytest

from airflow_provider_oxen.emulator import EmulatorConfig, run_emulator_in_thread, start_emulator_process
from airflow_provider_oxen.emulator.__main__ import parse_args

from .helpers import PLAIN, open_image

KEY = "proc-key-5e1c77aa"


@pytest.mark.slow  # an emulator process of its own
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_cli_process_serves_logs_without_the_key_and_stops_cleanly(signum: int) -> None:
    """Flags apply (credits, row parameters); the log never holds the key; a signal stops it cleanly."""
    flags = ["--render-seconds", "0.05", "--queue-seconds", "0.01", "--credits", "1", "--row-parameters"]
    proc = start_emulator_process(["--api-key", KEY, *flags])
    try:
        assert proc.url.startswith("http://127.0.0.1:")
        config = PLAIN.get(f"{proc.url}/_emulator/config").json()
        assert config["credits"] == "1.0000" and config["row_parameters"] is True
        headers = {"Authorization": f"Bearer {KEY}"}
        cheap = {"model": "black-forest-labs-flux-2-klein-4b", "prompt": "cheap", "seed": 4}
        queued = PLAIN.post(f"{proc.url}/api/ai/queue", headers=headers, json=cheap)
        gid = queued.json()["generations"][0]["generation_id"]
        assert PLAIN.get(f"{proc.url}/api/ai/queue/{gid}", headers=headers).json()["seed"] == 4
        response = PLAIN.post(
            f"{proc.url}/api/ai/images/generate",
            headers=headers,
            json={"model": "ideogram-v4", "prompt": "from a process", "image_size": "square"},
        )
        assert response.status_code == 200, response.text
        image = open_image(PLAIN.get(response.json()["images"][0]["url"]).content)
        assert (image.format, image.size) == ("JPEG", (512, 512))
        assert PLAIN.get(f"{proc.url}/api/ai/models").status_code == 401
        PLAIN.get(f"{proc.url}/api/ai/models/ideogram-v4", headers={"Authorization": "Bearer wrong"})
        proc.popen.send_signal(signum)
        assert proc.popen.wait(5) == 0  # a clean shutdown
        log = proc.log_text()
    finally:
        proc.stop()
    with pytest.raises(httpx.ConnectError):
        PLAIN.get(f"{proc.url}/api/ai/models", timeout=2)
    # The access log is path-only ("METHOD /path" status ...): never a query string or a header.
    assert '"GET /api/ai/models" 401' in log
    assert '"GET /api/ai/models/ideogram-v4" 401' in log
    assert KEY not in log and "wrong" not in log
    assert not proc.log_path.exists()


@pytest.mark.parametrize(
    ("argv", "named"), [(["--port", "0", "--credits", "lots"], "--credits"), ([], "--port")]
)
def test_cli_rejects_bad_or_missing_flags(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and named in capsys.readouterr().err


def test_thread_emulator_stops_on_exit() -> None:
    with run_emulator_in_thread(EmulatorConfig(render_seconds=0.01)) as server:
        url = server.url
        # Without --api-key any non-empty token is accepted.
        response = PLAIN.get(f"{url}/api/ai/models", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 200
        assert len(server.state.requests) == 1
    with pytest.raises(httpx.ConnectError):
        PLAIN.get(f"{url}/api/ai/models", timeout=2)
