"""A Java keystore (a JDK's ``cacerts``, or an application's own trust store), driven through keytool.

Many POS applications are Java programs, and Java ignores both NSS and, on many JDKs and always in the
JREs bundled with Windows and macOS applications, the OS anchors: it trusts the ``trustedCertEntry``
entries of its ``cacerts`` keystore (or the file named by ``-Djavax.net.ssl.trustStore``). mkcert's
``truststore_java.go`` imports its root there with ``keytool -importcert``; this store does the same for
a root or a device's own certificate, with these lessons built in:

- **which JDK**: the one ``java`` on PATH runs, as its own ``java.home`` says
  (``java -XshowSettings:properties -version``), with ``lib/security/cacerts`` (Java 9+) or
  ``jre/lib/security/cacerts`` (Java 8) under it. On Debian that is a symlink to
  ``/etc/ssl/certs/java/cacerts``, which ``update-ca-certificates`` rebuilds from the OS anchors: the
  file behind the link is what gets changed. That rebuild (ca-certificates-java's hook, ``--fresh``
  included) removes only its own ``debian:*`` aliases, so lancert's entries survive it; and an OS anchor
  (``--store system``) reaches this cacerts under a ``debian:`` alias, which ``remove
  --store java`` names but leaves to ``remove --store system``.
- **a device's own certificate works**: the JDK's PKIX validator accepts a server whose certificate is
  itself a trusted entry, CA or not (checked with the real JDK in ``tests/trust/test_trust_java.py``).
- **keytool rewrites the keystore in place**: an interrupted keytool would leave half a ``cacerts`` and no
  Java program on the machine could open a TLS connection. keytool works on a private copy, which then
  replaces the keystore atomically (:func:`lancert.storage.atomic_write`, same mode).
- **its messages are localised**: ``-J-Duser.language=en`` keeps the parsed output English; the password
  goes to keytool in its environment (``-storepass:env``), never on a command line ``ps`` shows.
- **aliases are lower-cased** by JKS and PKCS#12 keystores: entries are found by their DER, never by alias.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from lancert.pki import pem
from lancert.storage.files import StorageError, atomic_write
from lancert.trust.store import LABEL_PREFIX, TrustEntry, TrustStoreError, nickname
from lancert.trust.system import bundle_certificates

DEFAULT_STOREPASS = "changeit"  # every JDK's cacerts, and what mkcert uses
KEYTOOL_TIMEOUT = 60
JDK_HINT = "install a JDK (Debian/Ubuntu: apt install default-jdk-headless; Fedora: dnf install java-devel)"
_PASS_VARIABLE = "KEYTOOL_STOREPASS"  # noqa: S105 - a variable's name, set for keytool only
_JAVA_HOME = re.compile(r"^\s*java\.home = (?P<home>.+?)\s*$", re.MULTILINE)
_ALIAS = re.compile(r"^Alias name: (?P<alias>.*)$")
_ENTRY_TYPE = re.compile(r"^Entry type: (?P<type>\w+)")


@dataclass(frozen=True)
class Jdk:
    """A JDK as ``java`` reports it: its home, its keytool and its default trust store."""

    home: Path
    keytool: Path
    cacerts: Path


def find_jdk(java: str = "java") -> Jdk:
    """The JDK that ``java`` (on PATH, or a path) belongs to, from its own ``java.home``."""
    executable = shutil.which(java)
    if executable is None:
        raise TrustStoreError(f"no JDK found: {java} is not on PATH; {JDK_HINT}, or give --keystore PATH")
    try:
        proc = subprocess.run([executable, "-XshowSettings:properties", "-version"], capture_output=True,
                              timeout=KEYTOOL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TrustStoreError(f"{executable} did not run ({exc})") from None
    found = _JAVA_HOME.search(proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace"))
    if proc.returncode != 0 or found is None:
        raise TrustStoreError(f"{executable} did not say its java.home (exit {proc.returncode}); {JDK_HINT}")
    home = Path(found["home"])
    keytool = home / "bin" / "keytool"
    if not keytool.is_file():
        raise TrustStoreError(f"no keytool in {home}/bin (a JRE without the JDK tools?); {JDK_HINT}")
    for candidate in (home / "lib" / "security" / "cacerts", home / "jre" / "lib" / "security" / "cacerts"):
        if candidate.exists():
            return Jdk(home, keytool, candidate)
    raise TrustStoreError(f"the JDK in {home} has no lib/security/cacerts; give --keystore PATH")


def read_storepass(path: Path | None) -> str:
    """The keystore password: the first line of ``path``, else the JDK's default ``changeit``."""
    if path is None:
        return DEFAULT_STOREPASS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustStoreError(f"{path}: cannot read the keystore password ({exc})") from None
    if not lines or not lines[0]:
        raise TrustStoreError(f"{path}: empty; its first line is the keystore password")
    return lines[0]


def parse_keytool_rfc_list(output: str) -> list[tuple[str, str, list[x509.Certificate]]]:
    """``(alias, entry type, certificates)`` per entry of ``keytool -list -rfc``."""
    entries: list[tuple[str, str, list[x509.Certificate]]] = []
    alias, kind, block = None, "", []

    def flush() -> None:
        if alias is None:
            return
        # A JDK's cacerts holds roots cryptography only warns about (non-positive serials): parsed as
        # the OS bundle is, with those warnings silenced.
        entries.append((alias, kind, bundle_certificates("\n".join(block).encode())))

    for line in output.splitlines():
        m = _ALIAS.match(line)
        if m:
            flush()
            alias, kind, block = m["alias"], "", []
            continue
        t = _ENTRY_TYPE.match(line)
        if t and not kind:
            kind = t["type"]
        block.append(line)
    flush()
    return entries


@dataclass
class JavaStore:
    """One keystore file, changed with ``keytool`` (the JDK's, or the first on PATH)."""

    keystore: Path
    storepass: str = field(default=DEFAULT_STOREPASS, repr=False)
    keytool: str | None = None
    jdk_home: Path | None = None

    @classmethod
    def detect(cls, keystore: Path | None = None, storepass: str = DEFAULT_STOREPASS,
               java: str = "java") -> JavaStore:
        """``keystore`` with the JDK's keytool, or, without one, the cacerts of the JDK ``java`` runs."""
        if keystore is not None:
            keytool = shutil.which("keytool")
            if keytool is None:
                try:
                    keytool = str(find_jdk(java).keytool)
                except TrustStoreError:
                    raise TrustStoreError(f"no keytool found (not on PATH, no JDK); {JDK_HINT}") from None
            return cls(keystore, storepass, keytool)
        jdk = find_jdk(java)
        return cls(jdk.cacerts, storepass, str(jdk.keytool), jdk.home)

    @property
    def description(self) -> str:
        if self.jdk_home is not None:
            return f"Java keystore {self.keystore} (cacerts of the JDK in {self.jdk_home})"
        return f"Java keystore {self.keystore}"

    # -- keytool ------------------------------------------------------------------------------------------
    def _run(self, keystore: Path, *args: str, stdin: bytes | None = None) -> str:
        """keytool on ``keystore`` (the user's file, or the private copy being changed); messages name
        the user's file."""
        keytool = self.keytool or shutil.which("keytool")
        if keytool is None:
            raise TrustStoreError(f"keytool not found; {JDK_HINT}")
        cmd = [keytool, "-J-Duser.language=en", "-J-Duser.country=US", *args,
               "-keystore", str(keystore), "-storepass:env", _PASS_VARIABLE]
        env = {**os.environ, _PASS_VARIABLE: self.storepass}
        env.pop("JAVA_TOOL_OPTIONS", None)  # its "Picked up ..." line and options would change the output
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=KEYTOOL_TIMEOUT, env=env,
                                  check=False)
        except FileNotFoundError:
            raise TrustStoreError(f"{keytool} not found; {JDK_HINT}") from None
        except subprocess.TimeoutExpired:
            raise TrustStoreError(f"keytool took over {KEYTOOL_TIMEOUT} s on {self.keystore}") from None
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            text = (proc.stderr.decode(errors="replace") + out).strip()
            if "password was incorrect" in text or "Keystore was tampered" in text:
                raise TrustStoreError(
                    f"{self.keystore}: wrong keystore password (a JDK's cacerts uses {DEFAULT_STOREPASS!r}); "
                    "give the right one with --storepass-file FILE"
                )
            last = text.splitlines()[-1] if text else f"exit {proc.returncode}"
            last = last.removeprefix("keytool error: ")
            hint = "; run with sudo" if "ermission denied" in last or "AccessDenied" in last else ""
            raise TrustStoreError(f"keytool failed on {self.keystore}: {last}{hint}")
        return out

    def entries(self) -> list[tuple[str, str, list[x509.Certificate]]]:
        """Every ``(alias, entry type, certificates)`` of the keystore (none when it does not exist)."""
        if not self.keystore.exists():
            return []
        return parse_keytool_rfc_list(self._run(self.keystore, "-list", "-rfc"))

    def trusted_certificates(self) -> list[x509.Certificate]:
        """What a Java TLS client with this trust store accepts as anchors: every trustedCertEntry."""
        return [c for _, kind, certs in self.entries() if kind == "trustedCertEntry" for c in certs]

    def _aliases_of(self, cert: x509.Certificate) -> list[str]:
        return [a for a, kind, certs in self.entries() if kind == "trustedCertEntry" and cert in certs]

    def _change(self, *args: str, stdin: bytes | None = None) -> None:
        """Run keytool on a private copy of the keystore, then put the copy in its place atomically."""
        target = self.keystore.resolve()  # Debian's cacerts is a symlink: change the file, keep the link
        with tempfile.TemporaryDirectory(prefix="lancert-keystore-") as work:
            copy = Path(work) / "keystore"
            mode = 0o644
            if target.exists():
                try:
                    shutil.copyfile(target, copy)
                    mode = target.stat().st_mode & 0o7777
                except OSError as exc:
                    raise TrustStoreError(f"{target}: cannot read ({exc.strerror}); run with sudo") from None
            self._run(copy, *args, stdin=stdin)
            try:
                atomic_write(target, copy.read_bytes(), mode=mode)
            except StorageError as exc:
                raise TrustStoreError(f"{exc}; changing this keystore needs its owner: use sudo") from None

    # -- the TrustStore interface -----------------------------------------------------------------------
    def check(self, cert: x509.Certificate) -> bool:
        return bool(self._aliases_of(cert))

    def install(self, cert: x509.Certificate) -> None:
        """Import ``cert`` as a trustedCertEntry named ``lancert <CN> <fp8>`` unless it is already there."""
        if not self.check(cert):
            self._change("-importcert", "-noprompt", "-alias", nickname(cert), stdin=pem(cert))
        if not self.check(cert):
            raise TrustStoreError(f"{self.description}: keytool reported success but the certificate "
                                  "is not a trusted entry there")

    def uninstall(self, cert: x509.Certificate) -> bool:
        aliases = self._aliases_of(cert)
        ours = [a for a in aliases if a.lower().startswith(LABEL_PREFIX + " ")]
        for alias in ours:
            self._change("-delete", "-alias", alias)
        left = self._aliases_of(cert)
        if left:
            raise TrustStoreError(
                f"{self.description}: the certificate is still there under {', '.join(map(repr, left))}, "
                f"an alias lancert did not make; remove it by hand (keytool -delete -alias '{left[0]}' "
                f"-keystore {self.keystore})"
            )
        return bool(ours)

    def list(self) -> list[TrustEntry]:
        return [
            TrustEntry(self.description, alias, kind, certs[0] if certs else None)
            for alias, kind, certs in self.entries()
            if alias.lower().startswith(LABEL_PREFIX + " ")
        ]
