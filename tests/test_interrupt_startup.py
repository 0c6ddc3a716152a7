"""Ctrl-C during start-up, before any cell finished: one line and exit 130, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests import harness_toys
from tests.test_runner import strategy, write_suite

HOOK = Path(__file__).resolve().parent / "startup_hook"
SAFETY_S = 120  # only so that a broken run fails instead of hanging; nothing waits on it


def test_ctrl_c_while_the_worker_server_starts_is_one_line_and_exit_130(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, strategy("toy-random"))
    address = str(tmp_path / "startup.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(address)
        listener.listen(1)
        listener.settimeout(SAFETY_S)
        env = harness_toys.subprocess_env()
        env["PYTHONPATH"] = os.pathsep.join([str(HOOK), env["PYTHONPATH"]])
        env["HOBENCH_TEST_STARTUP_SOCKET"] = address
        process = subprocess.Popen(
            [sys.executable, "-m", "hobench", "run", str(suite), "--quiet"]
            + ["--results-dir", str(tmp_path / "results")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, as a terminal's foreground job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            server, _ = listener.accept()  # the worker server is starting: no cell has run
            with server:
                assert server.recv(16) == b"started\n"
                os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
                server.sendall(b"go\n")
            _, stderr = process.communicate(timeout=SAFETY_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == [
        "hobench: interrupted after 0 cell(s) run in "
        + stderr.split(" run in ")[1].split("s,")[0]
        + "s, 0 already done; finished cells are kept in "
        + f"{tmp_path / 'results' / 'runs.jsonl'}; rerun the same command to resume"
    ], stderr
