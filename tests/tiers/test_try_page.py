"""The try-it page at ``/`` in headless Chromium (Debian's ``chromium``, driven by PyPI's playwright).

A real device with its HTTP gateway in front of the testbed's edge; the page
uploads an image file, picks a shipped test image, and types a sentence; what
it shows must be the API's own answer for the same input. The page loads
nothing from outside (every request it makes is checked), and the last
screenshot is kept in ``.cache/try-it/`` (the README's picture is one of them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy_files import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = ROOT / ".cache" / "try-it"
SHIRT = ROOT / "samples" / "shirt.png"
SENTENCE = "A wonderful, moving film with a cast at the top of its game."


@pytest.fixture(scope="module")
def page(gateway_url: str) -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("no chromium: `apt-get install chromium` (Debian) to run the try-it page's test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        outside: list[str] = []
        page.on(
            "request", lambda r: None if r.url.startswith((gateway_url, "blob:", "data:")) else outside.append(r.url)
        )
        page.goto(gateway_url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        yield page
        browser.close()
        assert outside == [], f"the page fetched from outside the device: {outside}"


def shown(page: object) -> dict[str, str]:
    page.wait_for_selector("#answer", state="visible", timeout=15_000)  # type: ignore[attr-defined]
    read = lambda selector: page.inner_text(selector)  # type: ignore[attr-defined]  # noqa: E731
    return {
        "label_name": read("#label"),
        "exit_tier": read("#tier"),
        "exit_block": read("#block"),
        "policy": read("#policy-used"),
        "top_k": str(page.locator("#top-k-table tr").count()),
        "hops": str(page.locator("#hops tr").count()),  # type: ignore[attr-defined]
    }


def expected(answer: httpx.Response) -> dict[str, str]:
    body = answer.raise_for_status().json()
    return {
        "label_name": body["label_name"],
        "exit_tier": body["exit_tier"],
        "exit_block": str(body["exit_block"]),
        "policy": body["policy"],
        "top_k": str(len(body["top_k"])),
        "hops": str(len(body["hops"])),
    }


def clear(page: object) -> None:
    page.evaluate("document.getElementById('answer').style.display = 'none'")  # type: ignore[attr-defined]


def test_an_uploaded_image_shows_the_apis_answer(page: object, gateway_url: str) -> None:
    page.select_option("#model", "fmnist-cnn")  # type: ignore[attr-defined]
    page.fill("#top-k", "3")  # type: ignore[attr-defined]
    page.fill("#threshold", "0.95")  # type: ignore[attr-defined]
    page.set_input_files("#file", str(SHIRT))  # type: ignore[attr-defined]
    clear(page)
    page.click("#send")  # type: ignore[attr-defined]
    on_page = shown(page)
    api = httpx.post(
        f"{gateway_url}/v1/infer",
        content=SHIRT.read_bytes(),
        headers={"Content-Type": "image/png"},
        params={"model": "fmnist-cnn", "top_k": 3, "threshold": 0.95},
    )
    assert on_page == expected(api)
    assert page.locator("#stack div").count() >= 1  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "image.png"), full_page=True)  # type: ignore[attr-defined]


def test_a_shipped_test_image_shows_the_apis_answer(page: object, gateway_url: str) -> None:
    page.fill("#threshold", "")  # type: ignore[attr-defined]
    page.fill("#top-k", "5")  # type: ignore[attr-defined]
    page.click("#samples img:nth-child(4)")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('preview').src.includes('/samples/3.png')")  # type: ignore[attr-defined]
    clear(page)
    page.click("#send")  # type: ignore[attr-defined]
    on_page = shown(page)
    png = httpx.get(f"{gateway_url}/samples/3.png").raise_for_status().content
    api = httpx.post(f"{gateway_url}/v1/infer", content=png, headers={"Content-Type": "image/png"}, params={"top_k": 5})
    assert on_page == expected(api)


def test_a_typed_sentence_shows_the_apis_answer(page: object, gateway_url: str) -> None:
    page.select_option("#model", "minilm-sentiment")  # type: ignore[attr-defined]
    page.fill("#top-k", "2")  # type: ignore[attr-defined]
    page.fill("#text", SENTENCE)  # type: ignore[attr-defined]
    clear(page)
    page.click("#send")  # type: ignore[attr-defined]
    on_page = shown(page)
    api = httpx.post(
        f"{gateway_url}/v1/infer",
        content=SENTENCE.encode(),
        headers={"Content-Type": "text/plain"},
        params={"model": "minilm-sentiment", "top_k": 2},
    )
    assert on_page == expected(api) and on_page["label_name"] == "positive"
    page.screenshot(path=str(SCREENSHOTS / "text.png"), full_page=True)  # type: ignore[attr-defined]


def test_an_error_is_shown_as_the_problem_detail(page: object) -> None:
    page.fill("#text", "great " * 300)  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('error').textContent.length > 0")  # type: ignore[attr-defined]
    assert page.inner_text("#error").startswith("400 INVALID_ARGUMENT: ")  # type: ignore[attr-defined]
    assert "at most 128" in page.inner_text("#error")  # type: ignore[attr-defined]
