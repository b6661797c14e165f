"""What every device's own web configuration page (the IoT box's homepage, the printer's admin page) sends
with its HTML.

These pages hold forms that change a device's settings or certificates, on a LAN where any other site
open in the shop's browser can reach them: never cached (a shared POS browser), never framed
(clickjacking on a settings button), no script or remote content at all, forms posted only to the page's
own origin, and no content-type sniffing.
"""

from __future__ import annotations

from types import MappingProxyType

FORM_PAGE_HEADERS = MappingProxyType({
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
})
