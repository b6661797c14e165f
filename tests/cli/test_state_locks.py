"""One process per state directory (issue 24 point 8): a second ``service run`` on the same SQLite
``--data-dir`` and a second ``box run`` on the same ``--state-dir`` refuse with one line naming the holder;
before, both started without a word and wrote the same files. A holder killed with SIGKILL leaves no
stale lock."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lancert.up.stack import Child
from lancert_cli import lancert
from service_process import ServiceProcess

pytestmark = pytest.mark.slow


def test_a_second_service_on_one_sqlite_data_dir_refuses_naming_the_first(tmp_path: Path) -> None:
    data_dir = tmp_path / "service"
    first = ServiceProcess(data_dir, ["--dns-port", "0"]).start()
    try:
        assert first.child is not None
        second = lancert("service", "run", "--data-dir", str(data_dir), "--port", "0", "--dns-port", "0",
                         check=False)
        assert second.returncode == 1 and second.stdout == ""
        assert second.stderr == (f"lancert: another 'lancert service run' (PID {first.child.proc.pid}) is "
                                 f"using {data_dir}; stop it first, or give this one its own --data-dir\n")
        # the first one serves on, untouched
        assert first.client().get("/healthz").status_code == 200
        first.child.proc.send_signal(signal.SIGKILL)  # dies without cleaning up
        first.child.proc.wait(10)
    finally:
        first.stop()
    again = ServiceProcess(data_dir, ["--dns-port", "0"]).start()  # the kernel dropped the lock
    again.stop()


def test_a_second_box_on_one_state_dir_refuses_naming_the_first(tmp_path: Path) -> None:
    state = tmp_path / "box"
    args = ["box", "run", "--state-dir", str(state), "--http-port", "0", "--https-port", "0",
            "--lan-ip", "127.0.0.1"]
    first = Child.start("the box", args, tmp_path / "box.log")
    try:
        first.wait_for("lancert box:", 60)
        second = lancert(*args, check=False)
        assert second.returncode == 1
        assert second.stderr == (f"lancert: another 'lancert box run' (PID {first.proc.pid}) is using "
                                 f"{state}; stop it first, or give this one its own --state-dir\n")
    finally:
        first.stop()


def test_a_second_service_on_one_sqlite_file_from_another_data_dir_refuses_naming_the_first(
    tmp_path: Path,
) -> None:
    """``--db sqlite:///FILE`` from two data directories is still one SQLite database: the second service
    refuses as on one data directory (the lock is the database's, not only the directory's)."""
    shared = tmp_path / "shared" / "service.db"
    shared.parent.mkdir()
    db = ["--db", f"sqlite:///{shared}", "--dns-port", "0"]
    first = ServiceProcess(tmp_path / "one", db).start()
    try:
        assert first.child is not None
        second = lancert("service", "run", "--data-dir", str(tmp_path / "two"), "--port", "0", *db,
                         check=False)
        assert second.returncode == 1 and second.stdout == ""
        assert second.stderr == (f"lancert: another 'lancert service run' (PID {first.child.proc.pid}) is "
                                 f"using {shared.parent}; stop it first, or give this one its own --db\n")
        assert first.client().get("/healthz").status_code == 200
    finally:
        first.stop()


def test_two_services_on_one_postgresql_share_it_even_from_one_data_dir(tmp_path: Path) -> None:
    """PostgreSQL instances share a database by design: no lock refuses the second, even on the same
    ``--data-dir``, and both answer."""
    import postgres_server
    from capabilities import require

    require(postgres_server.PG_BIN is not None, postgres_server.MISSING)
    with postgres_server.running_postgres() as url:
        args = ["--db", url, "--dns-port", "0"]
        first = ServiceProcess(tmp_path / "data", args).start(timeout=60)
        try:
            second = ServiceProcess(tmp_path / "data", args).start(timeout=60)
            try:
                for service in (first, second):
                    assert service.client().get("/healthz").status_code == 200
            finally:
                second.stop()
        finally:
            first.stop()
