"""Trust stores (NSS, the OS anchors) behind one interface, plus fetching and per-platform guides."""

from lancert.trust.fetch import HandshakeError, Target, UnreachableError, parse_target, served_chain
from lancert.trust.nss import CA_TRUST, PEER_TRUST, NssStore, nss_databases, trust_flags
from lancert.trust.store import TrustEntry, TrustStore, TrustStoreError, anchor_file_name, nickname
from lancert.trust.system import DEBIAN, FEDORA, SystemLayout, SystemStore, detect_layout

__all__ = [
    "CA_TRUST", "DEBIAN", "FEDORA", "PEER_TRUST", "HandshakeError", "NssStore", "SystemLayout", "SystemStore",
    "Target", "TrustEntry", "TrustStore", "TrustStoreError", "UnreachableError", "anchor_file_name",
    "detect_layout", "nickname", "nss_databases", "parse_target", "served_chain", "trust_flags",
]
