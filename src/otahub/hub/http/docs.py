"""The API documentation page: Swagger UI from an installed package, no CDN.

The hub is often run where devices are, without internet access; the page
and every asset it loads come from the hub itself.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(str(swagger_ui_bundle.swagger_ui_path))


def install(app: FastAPI, *, docs_url: str, openapi_url: str) -> None:
    assets_url = f"{docs_url}/assets"
    app.mount(assets_url, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{assets_url}/favicon-32x32.png",
            # the bearer token entered under Authorize survives a reload
            # no badge from an outside validator service: the page works offline
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )
