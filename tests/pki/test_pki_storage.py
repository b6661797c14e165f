"""lancert.storage: atomic writes with the final mode from creation; key/cert pairs that survive crashes."""

from __future__ import annotations

import os
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from lancert.pki import SubjectNames, generate_private_key, pem, private_key_pem, self_signed_certificate
from lancert.pki.keys import public_key_matches
from lancert.storage.files import (
    KEY_MODE,
    Credential,
    CredentialFiles,
    StorageError,
    atomic_write,
    read_json,
    write_json,
    write_private_key,
)


def _credential(ip: str) -> Credential:
    key = generate_private_key()
    cert = self_signed_certificate(key, SubjectNames.parse(ips=[ip]), validity=timedelta(days=30))
    return Credential((cert,), key)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_sets_mode_and_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "cert.pem"
    atomic_write(target, b"one")
    assert target.read_bytes() == b"one" and _mode(target) == 0o644
    atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two" and _mode(target) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["cert.pem"]  # no temporary file left


def test_key_file_is_0600_from_its_creation_even_with_a_permissive_umask(tmp_path: Path, monkeypatch) -> None:
    # At the moment the key bytes are flushed to disk (fsync of the temporary file), the file that holds
    # them must already be 0600; mkstemp's 0600 plus fchmod before writing guarantee it.
    seen: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def spy_fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            seen.append((stat.S_IMODE(st.st_mode), st.st_size))
        real_fsync(fd)

    old_umask = os.umask(0)
    try:
        monkeypatch.setattr(os, "fsync", spy_fsync)
        write_private_key(tmp_path / "key.pem", generate_private_key())
    finally:
        os.umask(old_umask)
    assert _mode(tmp_path / "key.pem") == KEY_MODE
    assert seen and all(mode == KEY_MODE and size > 0 for mode, size in seen)


class DurabilitySpy:
    """Records renames and fsyncs in order: ("fsync", "file"|<directory>) and ("replace", <target name>).

    A rename is durable only once its directory is fsync'd (rename(2) changes the directory, not the file):
    without that fsync a power cut can bring back the old name. Nothing on a running system shows the
    difference, so the order of the calls is what these tests check.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            self.events.append(("fsync", f"dir:{st.st_ino}" if stat.S_ISDIR(st.st_mode) else "file"))
            real_fsync(fd)

        def replace(src: str | Path, dst: str | Path) -> None:
            real_replace(src, dst)
            self.events.append(("replace", Path(dst).name))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    @staticmethod
    def dir_fsync(directory: Path) -> tuple[str, str]:
        return ("fsync", f"dir:{directory.stat().st_ino}")


def test_atomic_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DurabilitySpy(monkeypatch)
    atomic_write(tmp_path / "cert.pem", b"data")
    assert spy.events == [("fsync", "file"), ("replace", "cert.pem"), spy.dir_fsync(tmp_path)]


def test_a_credential_swap_ends_with_the_directory_fsync_after_both_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = CredentialFiles(tmp_path)
    files.write(_credential("10.0.0.1"))
    spy = DurabilitySpy(monkeypatch)
    files.write(_credential("10.0.0.2"))
    directory = spy.dir_fsync(tmp_path)
    assert spy.events == [
        ("fsync", "file"), ("replace", "key.pem.new"), directory,
        ("fsync", "file"), ("replace", "cert.pem.new"), directory,
        ("replace", "key.pem"), ("replace", "cert.pem"), directory,
    ]


@pytest.mark.parametrize("point", ["both-staged", "key-renamed"])
def test_recovery_fsyncs_the_directory_after_its_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    files = CredentialFiles(tmp_path)
    _stage(files, _credential("10.0.0.1"), _credential("10.0.0.2"), point)
    spy = DurabilitySpy(monkeypatch)
    files.recover()
    renames = [("replace", "key.pem")] if point == "both-staged" else []
    assert spy.events == [*renames, ("replace", "cert.pem"), spy.dir_fsync(tmp_path)]


def test_the_temporary_file_is_hidden_beside_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same directory (a rename across file systems is not atomic) and named .<name>.*.tmp, the pattern
    CredentialFiles.recover cleans up after a crash."""
    sources: list[Path] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        sources.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic_write(tmp_path / "deep" / "er" / "cert.pem", b"data")  # missing parents are made
    (source,) = sources
    assert source.parent == tmp_path / "deep" / "er"
    assert source.name.startswith(".cert.pem.") and source.name.endswith(".tmp")


def test_a_failed_directory_fsync_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError) as failed:
        atomic_write(tmp_path / "cert.pem", b"new")
    assert str(failed.value) == f"{tmp_path / 'cert.pem'}: cannot write (Input/output error)"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.pem"]  # renamed already: no temporary left


def test_private_keys_are_pkcs8_unless_pkcs1_is_asked(tmp_path: Path) -> None:
    from lancert.pki import generate_private_key as new_key

    key = new_key("rsa")
    write_private_key(tmp_path / "key.pem", key)
    assert (tmp_path / "key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    write_private_key(tmp_path / "key1.pem", key, pkcs1=True)
    assert (tmp_path / "key1.pem").read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert _mode(tmp_path / "key1.pem") == 0o600


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "cert.pem"
    atomic_write(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="Input/output error"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.pem"]


def test_write_into_a_file_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(StorageError, match="cannot write"):
        atomic_write(blocker / "cert.pem", b"data")


def test_json_round_trip_and_default_for_missing_or_bad(tmp_path: Path) -> None:
    write_json(tmp_path / "state.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "state.json") == {"a": [1, 2], "b": 1}
    assert read_json(tmp_path / "missing.json", {}) == {}
    (tmp_path / "bad.json").write_text("{")
    assert read_json(tmp_path / "bad.json", "default") == "default"


def test_credential_files_write_read_and_modes(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path / "state")
    assert not files.exists()
    cred = _credential("10.0.0.1")
    files.write(cred)
    back = files.read()
    assert back.certificate == cred.certificate
    assert public_key_matches(back.key, cred.certificate.public_key())
    assert _mode(files.key_path) == 0o600 and _mode(files.cert_path) == 0o644
    assert sorted(p.name for p in files.directory.iterdir()) == ["cert.pem", "key.pem"]


def test_read_refuses_a_mismatched_pair(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path)
    files.write(_credential("10.0.0.1"))
    files.key_path.write_bytes(private_key_pem(generate_private_key()))
    with pytest.raises(StorageError, match="does not belong"):
        files.read()


# The crash points of CredentialFiles.write, in order: what is on disk when the power goes.
def _stage(files: CredentialFiles, old: Credential, new: Credential, point: str) -> None:
    files.write(old)
    key_new, cert_new = Path(str(files.key_path) + ".new"), Path(str(files.cert_path) + ".new")
    tmp = files.directory / f".{key_new.name}.abc123.tmp"
    if point == "writing-key-tmp":
        tmp.write_bytes(private_key_pem(new.key)[:40])  # half a temporary key file
    elif point == "key-staged":
        key_new.write_bytes(private_key_pem(new.key))
    elif point == "key-staged-cert-tmp":
        key_new.write_bytes(private_key_pem(new.key))
        (files.directory / f".{cert_new.name}.abc123.tmp").write_bytes(pem(new.chain)[:50])
    elif point == "both-staged":
        key_new.write_bytes(private_key_pem(new.key))
        cert_new.write_bytes(pem(new.chain))
    elif point == "key-renamed":
        files.key_path.write_bytes(private_key_pem(new.key))
        cert_new.write_bytes(pem(new.chain))
    elif point == "both-renamed":
        files.key_path.write_bytes(private_key_pem(new.key))
        files.cert_path.write_bytes(pem(new.chain))
    else:
        raise AssertionError(point)


@pytest.mark.parametrize(
    ("point", "expect"),
    [
        ("writing-key-tmp", "old"),
        ("key-staged", "old"),
        ("key-staged-cert-tmp", "old"),
        ("both-staged", "new"),
        ("key-renamed", "new"),
        ("both-renamed", "new"),
    ],
)
def test_recover_after_a_crash_at_each_point_leaves_a_matching_pair(
    tmp_path: Path, point: str, expect: str
) -> None:
    files = CredentialFiles(tmp_path)
    old, new = _credential("10.0.0.1"), _credential("10.0.0.2")
    _stage(files, old, new, point)
    unrelated = tmp_path / ".state.json.xyz.tmp"  # another writer's write in flight: not ours to delete
    unrelated.write_bytes(b"{}")
    files.recover()
    got = files.read()  # raises unless cert.pem and key.pem belong together
    assert got.certificate == (old if expect == "old" else new).certificate
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.json.xyz.tmp", "cert.pem", "key.pem"]


@pytest.mark.parametrize("staged", ["foreign-pair", "garbage-cert", "lone-foreign-cert", "lone-garbage-cert"])
def test_recover_never_installs_a_staged_certificate_that_does_not_belong(
    tmp_path: Path, staged: str
) -> None:
    """A staged pair is committed only when it matches; a lone staged certificate only when it matches the
    key in place (the crash between the renames). Anything else is dropped and the old pair stays."""
    files = CredentialFiles(tmp_path)
    old, other = _credential("10.0.0.1"), _credential("10.0.0.2")
    files.write(old)
    cert_new = Path(str(files.cert_path) + ".new")
    key_new = Path(str(files.key_path) + ".new")
    cert_bytes = pem(other.chain) if "foreign" in staged else b"garbage"
    cert_new.write_bytes(cert_bytes)
    if not staged.startswith("lone"):
        key_new.write_bytes(private_key_pem(_credential("10.0.0.3").key))  # not the staged cert's key
    files.recover()
    assert files.read().certificate == old.certificate
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem", "key.pem"]


def test_write_json_is_sorted_indented_and_stringifies_what_json_cannot(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    write_json(tmp_path / "state.json", {"b": Path("/x"), "a": datetime(2026, 1, 2, tzinfo=UTC)})
    assert (tmp_path / "state.json").read_text() == (
        '{\n  "a": "2026-01-02 00:00:00+00:00",\n  "b": "/x"\n}\n'
    )
    assert _mode(tmp_path / "state.json") == 0o644
    write_json(tmp_path / "settings.json", {"code": "secret"}, mode=0o600)
    assert _mode(tmp_path / "settings.json") == 0o600


def test_write_announces_each_step_with_the_files_as_a_crash_there_would_leave_them(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path / "a" / "b" / "state")  # missing parents are made
    old, new = _credential("10.0.0.1"), _credential("10.0.0.2")
    files.write(old)
    seen: list[tuple[str, str, str]] = []

    def checkpoint(point: str) -> None:
        on_disk = files.directory
        key = "new" if (on_disk / "key.pem").read_bytes() == private_key_pem(new.key) else "old"
        cert = "new" if (on_disk / "cert.pem").read_bytes() == pem(new.chain) else "old"
        seen.append((point, key, cert))

    files.write(new, checkpoint=checkpoint)
    assert seen == [
        ("key_staged", "old", "old"), ("cert_staged", "old", "old"), ("between_renames", "new", "old")
    ]
    assert files.read().certificate == new.certificate


def test_read_names_what_is_missing_or_unreadable(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path)
    with pytest.raises(StorageError) as no_cert:
        files.read()
    assert str(no_cert.value) == f"{files.cert_path}: no certificate stored"
    files.cert_path.write_bytes(b"garbage")
    with pytest.raises(StorageError) as bad_cert:
        files.read()
    assert str(bad_cert.value) == (
        f"{files.cert_path}: unreadable certificate (not a valid certificate (garbage or truncated PEM/DER))"
    )
    files.cert_path.write_bytes(pem(_credential("10.0.0.1").chain))
    with pytest.raises(StorageError) as no_key:
        files.read()
    assert str(no_key.value) == f"{files.key_path}: no private key stored"
    files.key_path.write_bytes(b"garbage")
    with pytest.raises(StorageError) as bad_key:
        files.read()
    assert str(bad_key.value) == f"{files.key_path}: unreadable private key"


def test_recover_on_a_missing_directory_or_a_file_does_nothing(tmp_path: Path) -> None:
    CredentialFiles(tmp_path / "missing").recover()
    (tmp_path / "file").write_bytes(b"x")
    CredentialFiles(tmp_path / "file").recover()
    assert not (tmp_path / "missing").exists()
    with pytest.raises(StorageError, match="cannot create directory"):
        CredentialFiles(tmp_path / "file").write(_credential("10.0.0.1"))


def test_concurrent_readers_never_see_a_mismatched_pair(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path)
    creds = [_credential(f"10.0.0.{i}") for i in range(1, 4)]
    written = {c.certificate.fingerprint(hashes.SHA256()): c for c in creds}
    files.write(creds[0])
    returned: list[Credential] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                returned.append(files.read())
            except StorageError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(30):
        files.write(creds[i % 3])
    stop.set()
    for thread in threads:
        thread.join()
    # Between the two renames a reader may briefly see the new key with the old certificate; read()
    # must then say so (StorageError), never return a pair that does not belong together.
    assert returned, "the readers read nothing: the test proved nothing"
    for got in returned:
        assert public_key_matches(got.key, got.certificate.public_key())
        expected = written[got.certificate.fingerprint(hashes.SHA256())]
        assert private_key_pem(got.key) == private_key_pem(expected.key)
    assert all("does not belong" in e for e in errors), errors[:3]


def test_read_between_the_two_renames_says_the_pair_does_not_belong(tmp_path: Path) -> None:
    # What a reader sees while a swap is between its renames (the new key, the old certificate).
    files = CredentialFiles(tmp_path)
    old, new = _credential("10.0.0.1"), _credential("10.0.0.2")
    _stage(files, old, new, "key-renamed")
    with pytest.raises(StorageError) as refused:
        files.read()
    assert str(refused.value) == f"{files.cert_path} does not belong to {files.key_path}"
