"""The service's API page ``/docs`` renders with no network but the service's own port (issue 18): it
used to load Swagger UI from a CDN, a blank page on a shop LAN without internet and third-party script
in an admin page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from service_testlib import ServiceProcess

from capabilities import require
from chromium import CHROMIUM, run_script

pytestmark = pytest.mark.slow  # a service process, and Chromium

# Resolves once Swagger UI has drawn the API's operations (or after 20 s with what is there), with every
# URL the page loaded or names in its DOM.
RENDERED = """new Promise(done => {
  const started = Date.now();
  const look = () => {
    const operations = document.querySelectorAll('.swagger-ui .opblock').length;
    if (operations === 0 && Date.now() - started < 20000) { setTimeout(look, 100); return; }
    done(JSON.stringify({
      title: (document.querySelector('.swagger-ui .info .title') || {}).textContent || '',
      operations,
      loaded: performance.getEntriesByType('resource').map(e => e.name),
      named: [...document.querySelectorAll('[src], [href]')].map(e => e.src || e.href),
    }));
  };
  look();
})"""


def test_docs_render_offline_from_the_service_alone(service: ServiceProcess, tmp_path: Path) -> None:
    require(shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(),
            "Chromium (Debian package 'chromium') is not installed")
    page = httpx.get(f"{service.url}/docs", timeout=10, trust_env=False)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "//cdn" not in page.text and "https://" not in page.text, page.text
    # Chromium resolves no name at all (tests/chromium.py): a CDN would fail, and so would the page.
    seen = json.loads(run_script(f"{service.url}/docs", RENDERED, home=tmp_path / "chromium"))
    assert seen["title"].startswith("lancert certificate service"), seen
    assert seen["operations"] >= 4, seen  # healthz, root, certificates, the compatible call
    service_origin = urlsplit(service.url).netloc
    for url in [*seen["loaded"], *seen["named"]]:
        assert urlsplit(url).netloc == service_origin, f"{url} is not the service's own port"
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in seen["loaded"]), seen["loaded"]


def test_docs_assets_are_only_swagger_uis_files(service: ServiceProcess) -> None:
    """The asset route serves the three files the page names and nothing else of the package."""
    css = httpx.get(f"{service.url}/docs/assets/swagger-ui.css", timeout=10, trust_env=False)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ("swagger-ui.js.map", "..%2F__init__.py", "index.html"):
        assert httpx.get(f"{service.url}/docs/assets/{name}", timeout=10, trust_env=False).status_code == 404
    assert httpx.get(f"{service.url}/redoc", timeout=10, trust_env=False).status_code == 404
