"""The API page (``/docs``, Swagger UI) with its assets served by the port itself.

FastAPI's default page loads Swagger UI's script and stylesheet from a CDN: on a shop LAN without
internet, or offline, ``/docs`` was a blank page, and an admin page ran third-party script. The assets
come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which renders OpenAPI 3.1 as FastAPI writes
it; Swagger UI 4 refuses 3.1) and are served under ``/docs/assets/``. The page names no external URL:
Swagger UI's online validator badge (``validatorUrl``, which would call validator.swagger.io) is off.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse

# The only files the page loads, and their types: nothing else of the package is served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def serve_docs_locally(app: FastAPI, path: str = "/docs") -> None:
    """Add ``path`` (Swagger UI over ``app``'s OpenAPI) and its assets to ``app``, which must have been
    made with ``docs_url=None`` and ``redoc_url=None`` (FastAPI's own pages use the CDN)."""
    directory = Path(str(swagger_ui_bundle.swagger_ui_path))
    assets = f"{path}/assets"

    @app.get(path, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(f"{assets}/{{name}}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404)
        return FileResponse(directory / name, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400"})
