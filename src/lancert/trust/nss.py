"""NSS databases, the trust stores of Chrome/Chromium and Firefox on Linux, driven through certutil.

Trust flags were determined with the real browsers, not from documentation: headless Chromium
156.0.8078.79 and Firefox 153.7.0esr (Debian bookworm builds), a page served by the certificate's
owner and reached as https://192.168.1.25 and https://printer.test (mapped to loopback for Chromium;
inside a network namespace of its own for Firefox, see ``tests/firefox.py``).

Chromium's errors are ``net::ERR_CERT_<X>`` and Firefox's ``MOZILLA_PKIX_ERROR_<X>`` where only ``<X>``
is written; "page" means the page loaded with no warning (the padlock).

=====================================  =========  ===================  ==============================
certificate                            NSS trust  Chromium             Firefox
=====================================  =========  ===================  ==============================
self-signed end entity (CA:FALSE)      none       AUTHORITY_INVALID    SELF_SIGNED_CERT
self-signed end entity (CA:FALSE)      ``P,,``    page                 SELF_SIGNED_CERT
self-signed end entity (CA:FALSE)      ``C,,``    INVALID              page
self-signed end entity (CA:FALSE)      ``CT,,``   INVALID              page
self-signed end entity (CA:FALSE)      ``CP,,``   page                 page
self-signed end entity (CA:FALSE)      ``p,,``    AUTHORITY_INVALID    (not tried)
CA-issued leaf alone, root untrusted   ``P,,``    page                 ``SEC_ERROR_UNKNOWN_ISSUER``
CA-issued leaf alone, root untrusted   ``CP,,``   page                 page
root CA (CA:TRUE) above a server leaf  ``C,,``    page                 page
root CA (CA:TRUE) above a server leaf  ``P,,``    AUTHORITY_INVALID    ``SEC_ERROR_UNTRUSTED_ISSUER``
root CA (CA:TRUE) above a server leaf  ``CP,,``   (not tried)          page
self-signed server cert with CA:TRUE   ``C,,``    page                 CA_CERT_USED_AS_END_ENTITY
self-signed server cert with CA:TRUE   ``CP,,``   page                 CA_CERT_USED_AS_END_ENTITY
self-signed server cert with CA:TRUE   ``P,,``    page                 SELF_SIGNED_CERT
=====================================  =========  ===================  ==============================

The two browsers disagree on a device's own certificate: Chromium wants a trusted *peer* (``P``) and
rejects ``C`` on a CA:FALSE certificate; Firefox (mozilla::pkix) ignores ``P`` and accepts only a
trust *anchor* (``C``), which may be the end-entity certificate itself. ``CP,,`` satisfies both, so a
device's certificate gets ``CP,,`` in every database (Chrome's and each Firefox profile alike; a
``--nssdb`` directory may be either). A CA gets ``C,,``. A self-signed server certificate marked
CA:TRUE (some old printers) works in Chromium with ``C,,`` but Firefox refuses it whatever its trust
(:func:`firefox_refuses`); only a new certificate on the device fixes that. Firefox reads the trust
when it starts: certutil may change a profile while Firefox runs, but Firefox sees it only after a
restart. ``tests/trust`` re-checks these cases with both browsers on every run.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from lancert.pki import load_certificates, pem
from lancert.pki.errors import InvalidPEM
from lancert.trust.store import LABEL_PREFIX, TrustEntry, TrustStoreError, is_ca, nickname

CERTUTIL = "certutil"
PEER_TRUST = "CP,,"  # a device's own certificate: a peer for Chromium, an anchor for Firefox
CA_TRUST = "C,,"
CERTUTIL_TIMEOUT = 30

_LIST_LINE = re.compile(r"^(?P<nick>.+?)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$")


def trust_flags(cert: x509.Certificate) -> str:
    """``C,,`` for a CA, ``CP,,`` for anything else (see the module docstring for why)."""
    return CA_TRUST if is_ca(cert) else PEER_TRUST


def firefox_refuses(cert: x509.Certificate) -> bool:
    """A CA certificate that names hosts: a device serving its own CA:TRUE certificate.

    Firefox answers ``MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY`` for such a server whatever trust
    NSS gives the certificate (module docstring); Chromium accepts it with ``C,,``. A real root names
    no host (no subjectAltName), so it is not caught here.
    """
    if not is_ca(cert):
        return False
    try:
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return True


def has_trust(found: str, wanted: str) -> bool:
    """Whether ``found`` grants every SSL trust flag of ``wanted`` (``"CPu,,"`` grants ``"CP,,"``)."""
    return set(ssl_trust(wanted)) <= set(ssl_trust(found))


def parse_certutil_list(output: str) -> list[tuple[str, str]]:
    """``(nickname, trust)`` pairs from ``certutil -L`` (nicknames may contain spaces)."""
    entries = []
    for line in output.splitlines():
        m = _LIST_LINE.match(line.rstrip())
        if m and not line.startswith("Certificate Nickname"):
            entries.append((m["nick"].strip(), m["trust"]))
    return entries


def ssl_trust(flags: str) -> str:
    """The SSL part of an NSS trust string (``"CT,C,"`` → ``"CT"``)."""
    return flags.split(",", 1)[0]


def is_firefox_profile(directory: Path) -> bool:
    """Whether ``directory`` is a Firefox profile, whose database Firefox reads by its own rules.

    A profile lives in a ``.mozilla/firefox`` directory (deb, snap and flatpak alike) or the XDG
    ``mozilla/firefox`` one, or holds the files Firefox writes when it makes or starts a profile;
    Chrome's ``~/.pki/nssdb`` has none of them.
    """
    if directory.parent.name == "firefox" and directory.parent.parent.name in (".mozilla", "mozilla"):
        return True
    return any((directory / name).is_file() for name in ("prefs.js", "times.json", "compatibility.ini"))


@dataclass
class NssStore:
    """One NSS database directory (``cert9.db``); ``create`` makes it when missing (Chrome's default DB)."""

    directory: Path
    create: bool = False
    certutil: str = CERTUTIL

    @property
    def description(self) -> str:
        return f"NSS database {self.directory}"

    # -- certutil ------------------------------------------------------------------------------------
    def _run(self, *args: str, stdin: bytes | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
        cmd = [self.certutil, *args, "-d", f"sql:{self.directory}"]
        try:
            proc = subprocess.run(
                cmd, input=stdin, capture_output=True, timeout=CERTUTIL_TIMEOUT, check=False
            )
        except FileNotFoundError:
            raise TrustStoreError(
                f"{self.certutil} not found: install it (Debian/Ubuntu: apt install libnss3-tools; "
                "Fedora: dnf install nss-tools)"
            ) from None
        except subprocess.TimeoutExpired:
            raise TrustStoreError(f"certutil timed out on {self.directory} (a browser locking it?)") from None
        if proc.returncode not in ok_codes:
            err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            last = err[-1] if err else proc.returncode
            raise TrustStoreError(f"certutil failed on {self.directory}: {last}")
        return proc.stdout.decode(errors="replace")

    def exists(self) -> bool:
        return (self.directory / "cert9.db").is_file()

    def _ensure(self) -> None:
        if self.exists():
            return
        if not self.create:
            raise TrustStoreError(
                f"{self.directory} is not an NSS database (no cert9.db); if it is a browser profile, "
                "start the browser once so it creates it"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise TrustStoreError(f"{self.directory}: cannot create ({exc.strerror})") from None
        self._run("-N", "--empty-password")

    def entries(self) -> list[tuple[str, str]]:
        """Every ``(nickname, trust)`` in the database."""
        if not self.exists():
            return []
        return parse_certutil_list(self._run("-L"))

    def certificates(self, nick: str) -> list[x509.Certificate]:
        """The certificates stored under ``nick`` (NSS lets several share one nickname)."""
        out = self._run("-L", "-n", nick, "-a", ok_codes=(0, 255))
        try:
            return load_certificates(out.encode()) if "BEGIN CERTIFICATE" in out else []
        except InvalidPEM:
            return []

    def find(self, cert: x509.Certificate) -> tuple[str, str] | None:
        """``(nickname, trust)`` under which ``cert`` itself is stored, or None.

        NSS gives a new certificate the nickname of an existing one with the same subject (a printer
        that regenerated its certificate keeps its CN), so the expected nickname is tried first and
        then every entry, comparing the DER.
        """
        entries = self.entries()
        expected = nickname(cert)
        ordered = sorted(entries, key=lambda e: e[0] != expected)
        for nick, trust in ordered:
            if any(c == cert for c in self.certificates(nick)):
                return nick, trust
        return None

    # -- the TrustStore interface -----------------------------------------------------------------------
    def check(self, cert: x509.Certificate) -> bool:
        found = self.find(cert)
        return found is not None and has_trust(found[1], trust_flags(cert))

    def install(self, cert: x509.Certificate) -> None:
        self._ensure()
        flags = trust_flags(cert)
        found = self.find(cert)
        if found is None:
            self._run("-A", "-n", nickname(cert), "-t", flags, stdin=pem(cert))
        elif not has_trust(found[1], flags):
            self._run("-M", "-n", found[0], "-t", flags)
        if not self.check(cert):
            raise TrustStoreError(
                f"{self.description}: certutil reported success but the certificate is not trusted there; "
                "close the browser using it and retry"
            )

    def uninstall(self, cert: x509.Certificate) -> bool:
        found = self.find(cert)
        if found is None:
            return False
        # certutil lists every certificate of the same subject under a nickname but deletes only the one
        # holding it; lancert's own nickname carries the fingerprint, so it names this certificate.
        if found[0] != nickname(cert) and len(self.certificates(found[0])) > 1:
            raise TrustStoreError(
                f"{self.description}: the nickname {found[0]!r} holds several certificates; remove this one "
                f"by hand (certutil -D -d sql:{self.directory} -n '{found[0]}'), checking which it deletes"
            )
        self._run("-D", "-n", found[0])
        if self.find(cert) is not None:
            raise TrustStoreError(f"{self.description}: the certificate is still there after certutil -D")
        return True

    def list(self) -> list[TrustEntry]:
        result = []
        for nick, trust in self.entries():
            if nick.startswith(LABEL_PREFIX + " "):
                certs = self.certificates(nick)
                result.append(TrustEntry(self.description, nick, trust, certs[0] if certs else None))
        return result

    def trusted(self) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
        """``(anchors, trusted_leaves)``: the certificates with ``C`` and with ``P`` SSL trust."""
        anchors: list[x509.Certificate] = []
        leaves: list[x509.Certificate] = []
        for nick, trust in self.entries():
            ssl = ssl_trust(trust)
            if "C" in ssl or "P" in ssl:
                certs = self.certificates(nick)
                if "C" in ssl:
                    anchors.extend(certs)
                if "P" in ssl:
                    leaves.extend(certs)
        return anchors, leaves


def nss_databases(home: Path, environ: Mapping[str, str] | None = None) -> list[NssStore]:
    """The NSS databases a user's browsers read: Chrome's and every Firefox profile (each created if
    missing: certutil makes the same empty-password ``cert9.db`` Firefox makes at its first start, and
    Firefox then reads it, so a profile Firefox never ran in is covered too).

    Covers ``~/.pki/nssdb`` (Chrome, Chromium), the snap Chromium profile, and the Firefox profiles of
    :func:`firefox_profiles`. Only SQL databases (``cert9.db``) count: Firefox has not used the old
    ``cert8.db`` since version 58.
    """
    stores = [NssStore(home / ".pki" / "nssdb", create=True)]
    snap_chromium = home / "snap" / "chromium" / "current" / ".pki" / "nssdb"
    if (snap_chromium / "cert9.db").is_file():
        stores.append(NssStore(snap_chromium))
    stores.extend(NssStore(profile, create=True) for profile in firefox_profiles(home, environ))
    return stores


def _firefox_roots(home: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where Firefox keeps ``profiles.ini``: the XDG folder new profiles go to in recent releases
    (``$XDG_CONFIG_HOME/mozilla/firefox``, by default ``~/.config/mozilla/firefox``: Debian's
    firefox-esr 153 makes them there), the legacy ``~/.mozilla/firefox`` older installs keep using, and
    the snap and flatpak packages' own."""
    env = os.environ if environ is None else environ
    roots = [home / ".config" / "mozilla" / "firefox"]
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():  # Firefox ignores a relative one, as the XDG spec says
        roots.insert(0, Path(xdg) / "mozilla" / "firefox")
    roots += [
        home / ".mozilla" / "firefox",
        home / "snap" / "firefox" / "common" / ".mozilla" / "firefox",
        home / ".var" / "app" / "org.mozilla.firefox" / ".mozilla" / "firefox",
    ]
    return list(dict.fromkeys(roots))


def _ini_profiles(root: Path) -> list[Path]:
    """Profiles a root's ``profiles.ini`` names (``[ProfileN]`` Path/IsRelative, ``[Install…]``
    Default), and the defaults of its ``installs.ini``: relative to the root, or absolute."""
    found: list[Path] = []
    for name in ("profiles.ini", "installs.ini"):
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            ini.read(root / name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue
        for section in ini.sections():
            if section.startswith("Profile"):
                path = ini.get(section, "Path", fallback="")
                relative = ini.get(section, "IsRelative", fallback="1").strip() == "1"
            elif section.startswith("Install") or name == "installs.ini":
                path, relative = ini.get(section, "Default", fallback=""), True
            else:
                continue
            if path:
                found.append(root / path if relative and not Path(path).is_absolute() else Path(path))
    return found


def firefox_profiles(home: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Every Firefox profile directory of the user: those every ``profiles.ini`` and ``installs.ini``
    name, in both the XDG and the legacy folder (and snap, flatpak), and any directory beside them that
    already holds a ``cert9.db``; existing directories only, each once."""
    profiles: dict[Path, None] = {}
    for root in _firefox_roots(home, environ):
        for profile in [*_ini_profiles(root), *(db.parent for db in sorted(root.glob("*/cert9.db")))]:
            if profile.is_dir():
                profiles.setdefault(profile.resolve(), None)
    return list(profiles)
