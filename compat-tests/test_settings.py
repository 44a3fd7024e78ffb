"""Settings as a new user meets them, through the real binary: errors once
and by the setting's own name, `--check-config`, host names in `listen`,
SIGHUP, and directories the broker cannot write refused at start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib

from tools.kafka_wire import answers_api_versions
from tools.process import free_port


def run(binary, *args, env=None, cwd=None):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], **(env or {})}, cwd=cwd)


def test_check_config_prints_effective_settings_with_secrets_masked(lightstream_bin, tmp_path):
    (tmp_path / "lightstream.toml").write_text('num_partitions = 3\ns3_secret_access_key = "hunter2"\n')
    out = run(lightstream_bin, "--check-config", "--flush-interval-ms", "7",
              env={"LIGHTSTREAM_NODE_ID": "4", "LIGHTSTREAM_FLUSH_INTERVAL": "9"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    shown = tomllib.loads(out.stdout)
    assert (shown["num_partitions"], shown["node_id"], shown["flush_interval_ms"]) == (3, 4, 7)
    assert "hunter2" not in out.stdout
    assert str(tmp_path / "lightstream.toml") in out.stdout, "names the file it read"
    assert "LIGHTSTREAM_FLUSH_INTERVAL_MS" in out.stderr, "a misspelt variable gets the closest name"


def test_a_bad_setting_is_one_line_naming_it(lightstream_bin, tmp_path):
    (tmp_path / "lightstream.toml").write_text("group_min_session_timeout_ms = 2000000\n")
    out = run(lightstream_bin, "--check-config", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "group_min_session_timeout_ms" in out.stderr and "default." not in out.stderr
    (tmp_path / "lightstream.toml").write_text('flush_max_bytes = "big"\n')
    out = run(lightstream_bin, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.count("flush_max_bytes") == 1, out.stderr
    assert "default." not in out.stderr


def test_an_unwritable_data_dir_is_refused_at_start(lightstream_bin, tmp_path):
    # Root writes through permission bits; a regular file in the way of the
    # directory is refused for anyone.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    out = run(lightstream_bin, "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", "127.0.0.1:0",
              "--data-dir", str(blocker / "data"))
    assert out.returncode == 1
    assert str(blocker / "data") in out.stderr and "cannot create directory" in out.stderr, out.stderr


def test_listen_takes_a_host_name_and_sighup_is_ignored(broker_factory, tmp_path):
    b = broker_factory(start=False)
    settings = tmp_path / "lightstream.toml"
    settings.write_text(f'listen = "localhost:{b.port}"\nadmin_listen = "127.0.0.1:{b.admin_port}"\n'
                        f'data_dir = "{b.data_dir}"\n')
    b.settings_file = settings
    b.start()
    assert answers_api_versions(b.bootstrap)
    b.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SIGHUP ignored" not in b.log_path.read_text():
        assert time.monotonic() < deadline, "no log line for SIGHUP"
        time.sleep(0.05)
    assert b.running and answers_api_versions(b.bootstrap)
