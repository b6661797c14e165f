"""A CA kept on disk: a root and an intermediate, made once and loaded thereafter.

The service and the terminal each keep one; ``lancert ca init`` makes the shop's own, from which
:mod:`lancert.ca.issue` gives devices their certificates (``ca issue``, ``device create --ca``).
The root key signs only the intermediate; leaves come from the intermediate, so a leaked leaf-signing
key can be replaced without asking every client to re-trust.

Every new CA is named after who made it, as mkcert names its root ``mkcert user@host``: the subject is
``CN=<name> Root CA (user@host), OU=user@host, O=lancert``. Before that, every lancert root was
``CN=lancert Root CA, O=lancert``: two shops' roots, or a test root and the real one, looked the same in
a keychain, Android's "Trusted credentials" or iOS's Certificate Trust Settings (which list the CN).
Roots made earlier keep their names: a CA is loaded from its files, never re-made.
"""

from __future__ import annotations

import os
import pwd
import socket
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lancert.errors import LancertError
from lancert.pki import CertificateAuthority, load_certificates, load_private_key_pem
from lancert.pki.issuing import MAX_COMMON_NAME
from lancert.pki.keys import PrivateKey, public_key_matches
from lancert.storage.files import write_certificates, write_private_key

ROOT_CERT, ROOT_KEY = "root.pem", "root-key.pem"
INTERMEDIATE_CERT, INTERMEDIATE_KEY = "intermediate.pem", "intermediate-key.pem"


_ALL_FILES = (ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY)


class CAExists(LancertError):
    """A CA directory that already holds a CA."""


def maker(user: str | None = None, host: str | None = None) -> str:
    """``user@host`` of whoever makes a CA now: the account (from the process's uid, not from
    ``$USER``, which anyone may set) and the host name (``uname -n``, per UTS namespace)."""
    if user is None:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry (containers)
            user = str(os.getuid())
    return f"{user}@{host if host is not None else socket.gethostname()}"


def ca_common_name(label: str, made_by: str) -> str:
    """``<label> (<made_by>)`` within the 64 characters of a CN: the maker is shortened first (the OU
    carries it whole), and dropped when even the label barely fits (a label over 64 characters is left
    for :func:`lancert.pki.issuing.make_name` to refuse)."""
    full = f"{label} ({made_by})"
    if len(full) <= MAX_COMMON_NAME:
        return full
    room = MAX_COMMON_NAME - len(label) - len(" (...)")  # ASCII: cryptography counts bytes
    if room >= 8:
        return f"{label} ({made_by[:room]}...)"
    return label


class CADirectory:
    """Files of one CA in a directory: root and intermediate certificates and keys."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @property
    def root_path(self) -> Path:
        return self.directory / ROOT_CERT

    def exists(self) -> bool:
        return any((self.directory / n).exists() for n in _ALL_FILES)

    def create(
        self,
        name: str,
        *,
        name_constraints: x509.NameConstraints | None = None,
        root_key: PrivateKey | None = None,
        intermediate_key: PrivateKey | None = None,
        root_validity: timedelta = timedelta(days=3650),
        intermediate_validity: timedelta = timedelta(days=1825),
        made_by: str | None = None,
    ) -> CertificateAuthority:
        """Make a root and an intermediate; the intermediate is written last, as the "done" marker.

        Both are named ``<name> Root CA (<made_by>)`` and ``<name> Intermediate CA (<made_by>)`` with
        ``OU=<made_by>``; ``made_by`` defaults to :func:`maker` (this user on this host).
        """
        if self.exists():
            raise CAExists(f"{self.directory} already holds a CA; remove it first to make a new one")
        made_by = made_by if made_by is not None else maker()
        root = CertificateAuthority.create_root(
            ca_common_name(f"{name} Root CA", made_by), organizational_unit=made_by, key=root_key,
            validity=root_validity, name_constraints=name_constraints,
        )
        intermediate = root.create_intermediate(
            ca_common_name(f"{name} Intermediate CA", made_by), organizational_unit=made_by,
            key=intermediate_key, validity=intermediate_validity, name_constraints=name_constraints,
        )
        write_private_key(self.directory / ROOT_KEY, root.key)
        write_certificates(self.directory / ROOT_CERT, [root.certificate])
        write_private_key(self.directory / INTERMEDIATE_KEY, intermediate.key)
        write_certificates(self.directory / INTERMEDIATE_CERT, [intermediate.certificate])
        return intermediate

    def load(self) -> CertificateAuthority:
        """The intermediate, ready to issue, with the root as its parent."""
        try:
            root = load_certificates((self.directory / ROOT_CERT).read_bytes())[0]
            inter = load_certificates((self.directory / INTERMEDIATE_CERT).read_bytes())[0]
            key = load_private_key_pem((self.directory / INTERMEDIATE_KEY).read_bytes())
        except FileNotFoundError as exc:
            raise LancertError(f"{exc.filename}: missing; the CA in {self.directory} is incomplete") from None
        except OSError as exc:
            raise LancertError(f"{exc.filename}: cannot read ({exc.strerror})") from None
        # A swapped or hand-edited file would otherwise surface later as leaves no client accepts.
        if not public_key_matches(key, inter.public_key()):
            raise LancertError(f"{self.directory / INTERMEDIATE_KEY} does not belong to {INTERMEDIATE_CERT}")
        try:
            inter.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            raise LancertError(f"{self.directory / INTERMEDIATE_CERT} is not issued by {ROOT_CERT}") from None
        return CertificateAuthority(inter, key, (root,))

    def load_or_create(self, name: str, **kwargs: object) -> CertificateAuthority:
        if (self.directory / INTERMEDIATE_CERT).exists():
            return self.load()
        if self.exists():  # a crash during create left a partial CA that no one can have trusted yet
            for n in _ALL_FILES:
                (self.directory / n).unlink(missing_ok=True)
        return self.create(name, **kwargs)  # type: ignore[arg-type]
