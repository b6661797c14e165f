"""The POS side of terminal pairing: :class:`PosClient` pairs with a setup code, then calls over mTLS."""

from lancert.pos.client import PairingBundle, PairingFailed, PosClient, fetch_root_ca, parse_bundle

__all__ = ["PairingBundle", "PairingFailed", "PosClient", "fetch_root_ca", "parse_bundle"]
