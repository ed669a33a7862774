"""The try-it page at ``/``: pick a model, send an image or a sentence, see where it exited and what it cost.

One static page (``device/static/index.html``, no CDN, no build step) that
calls the gateway's own JSON API: ``/v1/models`` for the models and their
policies, ``/v1/infer`` for answers. It offers the test images shipped with the
package (:data:`splitexit.samples.SAMPLE_PACK`, one per class) so that it works
with nothing at hand; ``tests/tiers/test_try_page.py`` drives it in headless Chromium.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import grpc
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from splitexit.device.http_models import error_response, problem_responses
from splitexit.samples import SAMPLE_PACK, LabelledImage, load_pack

PAGE = Path(__file__).with_name("static") / "index.html"


@cache
def sample_images() -> list[LabelledImage]:
    """The first image of each class in the shipped pack, in class order."""
    firsts: dict[int, LabelledImage] = {}
    for image in load_pack(SAMPLE_PACK):
        firsts.setdefault(image.label, image)
    return [firsts[label] for label in sorted(firsts)]


def add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/samples", summary="Test images shipped with the package, one per Fashion-MNIST class")
    async def samples() -> JSONResponse:
        return JSONResponse(
            [{"index": i.index, "label": i.label, "url": f"/samples/{n}.png"} for n, i in enumerate(sample_images())]
        )

    @app.get(
        "/samples/{number}.png",
        summary="One shipped test image",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **problem_responses(404)},
    )
    async def sample(number: int) -> Response:
        images = sample_images()
        if not 0 <= number < len(images):
            return error_response(
                404, grpc.StatusCode.NOT_FOUND, f"there are {len(images)} samples, 0 to {len(images) - 1}"
            )
        return Response(images[number].png, media_type="image/png")
