"""The web gallery end to end in headless Chromium: page, local API, SeaweedFS and the style handlers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from atelier.local.api_server import serve_api
from atelier.local.stack import start_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = ROOT / "samples" / "chelsea.jpg"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STYLES = ("sketch", "pencil", "oil", "watercolor")
RENDER_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local stack of its own, its dispatcher, and the gallery server in front of them."""
    with start_stack(tmp_path_factory.mktemp("e2e-stack")) as stack:
        stack.start_dispatcher(apply_env=False)
        url, stop = serve_api(stack)
        try:
            yield url
        finally:
            stop()
            stack.dispatcher.wait_idle(timeout=60)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext, gallery_url: str) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gallery_url + "/")
    yield page
    page.close()
    assert errors == [], f"script errors on the page: {errors}"


def fetch_in_page(page: Page, url: str) -> dict[str, Any]:
    """Fetch ``url`` from the page (cross-origin, so the bucket's CORS rules apply); status, type, bytes."""
    result: dict[str, Any] = page.evaluate(
        """async (url) => {
            const r = await fetch(url);
            const bytes = new Uint8Array(await r.arrayBuffer());
            let s = ""; for (const b of bytes.slice(0, 16)) s += String.fromCharCode(b);
            return {status: r.status, type: r.headers.get("content-type"), head: btoa(s), size: bytes.length};
        }""",
        url,
    )
    result["head"] = base64.b64decode(result["head"])
    return result


def test_a_photo_uploaded_through_the_page_appears_in_every_style(page: Page) -> None:
    for style in STYLES:
        expect(page.locator(f'input[name="style"][value="{style}"]')).to_be_checked()
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]')
    expect(card).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT_MS)
    assert card.locator(".card-progress").evaluate("el => el.value") == 100
    tiles = card.locator(".tile")
    assert tiles.count() == len(STYLES)
    for style in STYLES:
        tile = card.locator(f'.tile[data-style="{style}"]')
        expect(tile).to_have_attribute("data-state", "done")
        render = tile.locator(".compare-after")
        expect(render).to_be_visible()
        assert render.evaluate("img => img.complete && img.naturalWidth") == 451
        assert tile.locator(".compare-before").evaluate("img => img.naturalWidth") == 451
        link = tile.locator("a.tile-download")
        expect(link).to_be_visible()
        href = link.get_attribute("href")
        assert href and link.get_attribute("download") == f"chelsea-{style}.jpg"
        fetched = fetch_in_page(page, href)
        assert fetched["status"] == 200 and fetched["type"] == "image/jpeg"
        assert fetched["head"][:3] == b"\xff\xd8\xff" and fetched["size"] > 1000
        response = page.request.get(href)
        assert response.headers["content-disposition"].startswith("attachment;")
        inside = link.evaluate(
            "a => { const t = a.closest('.tile').getBoundingClientRect(), b = a.getBoundingClientRect();"
            " return b.left >= t.left && b.right <= t.right && b.bottom <= t.bottom; }"
        )
        assert inside, f"the {style} download button spills out of its tile"
    slider = card.locator('.tile[data-style="oil"] .compare-range')
    slider.fill("20")
    assert (
        card.locator('.tile[data-style="oil"] .compare').evaluate("el => el.style.getPropertyValue('--pos')")
        == "20%"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)  # let the layout settle before measuring and capturing
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    widths = card.locator(".tile").evaluate_all("tiles => tiles.map(t => t.getBoundingClientRect().width)")
    assert all(w <= 390 for w in widths) and len(set(widths)) == 1  # one column of equal tiles
    page.screenshot(path=str(ARTIFACTS / "gallery-phone.png"), full_page=True)


def test_a_corrupt_photo_shows_why_it_was_rejected(page: Page, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    data = CHELSEA.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    page.locator('input[name="style"][value="pencil"]').uncheck()
    page.locator('input[name="style"][value="oil"]').uncheck()
    page.set_input_files("#file-input", str(broken))
    card = page.locator('.card[data-file="broken.jpg"]')
    expect(card).to_have_attribute("data-state", "problem", timeout=RENDER_TIMEOUT_MS)
    assert card.locator(".tile").count() == 2
    for style in ("sketch", "watercolor"):
        tile = card.locator(f'.tile[data-style="{style}"]')
        expect(tile).to_have_attribute("data-state", "rejected")
        expect(tile.locator(".tile-reason")).to_contain_text("corrupt: the JPEG is truncated")
        expect(tile.locator("a.tile-download")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-rejected.png"), full_page=True)


def test_a_file_the_api_refuses_shows_the_apis_reason(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#file-input", str(notes))
    card = page.locator('.card[data-file="notes.txt"]')
    expect(card).to_have_attribute("data-state", "refused", timeout=30_000)
    expect(card.locator(".card-error")).to_contain_text("content type 'text/plain' is not accepted")
