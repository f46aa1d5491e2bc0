"""Interactive API docs at ``/docs`` that work offline.

FastAPI's built-in ``/docs`` page loads Swagger UI from a CDN. This router serves the
Swagger UI bundle shipped inside the ``fastapi-offline`` package instead, and starts it from
a same-origin script rather than an inline one, so the page also works under the
``script-src 'self'`` Content-Security-Policy that ``app.security`` sets on HTML pages.
Every asset is a fixed route; no part of a request becomes a file path.
"""

import functools
import logging
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"

# Asset name -> media type; the files come from fastapi_offline/static.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

# validatorUrl null keeps Swagger UI from sending the schema to its public validator.
INIT_SCRIPT = """\
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""

PAGE_TEMPLATE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body data-openapi-url="{openapi_url}">
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


@functools.cache
def _asset_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


@router.api_route(DOCS_URL, methods=["GET", "HEAD"], response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Serve the Swagger UI page for the application's OpenAPI schema."""
    app = request.app
    page = PAGE_TEMPLATE.format(title=app.title, assets=ASSETS_URL, openapi_url=app.openapi_url)
    return HTMLResponse(page)


@router.get(f"{ASSETS_URL}/swagger-init.js")
def swagger_init() -> Response:
    return Response(INIT_SCRIPT, media_type="text/javascript; charset=utf-8")


def _asset_route(name: str, media_type: str):
    def serve_asset() -> Response:
        path = _asset_dir() / name
        if not path.is_file():
            logger.error("Swagger UI asset not found at %s", path)
            return PlainTextResponse(
                f"{name} not found at {path}; reinstall the fastapi-offline package.",
                status_code=404,
            )
        return FileResponse(path, media_type=media_type)

    serve_asset.__name__ = f"docs_asset_{name.replace('-', '_').replace('.', '_')}"
    return serve_asset


for _name, _media_type in ASSET_TYPES.items():
    router.add_api_route(f"{ASSETS_URL}/{_name}", _asset_route(_name, _media_type), methods=["GET"])
