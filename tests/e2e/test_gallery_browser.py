"""The web gallery end to end in headless Chromium: page, local API, SeaweedFS and the style handlers."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Route, ViewportSize, expect, sync_playwright

from atelier_dev.local.api_server import serve_api
from atelier_dev.local.stack import start_stack
from tests import imaging

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
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}
BOTH_SIZES = pytest.mark.parametrize("page", list(SIZES), indirect=True)


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local stack of its own, its dispatcher, and the gallery server in front of them.

    Its own stack name too: moto's in-process backends outlive a stack and are shared by every stack of
    this process, so the same table names would carry one tier's items into the next."""
    with start_stack(tmp_path_factory.mktemp("e2e-stack"), stack_name="atelier-e2e") as stack:
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
def page(browser: BrowserContext, gallery_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The gallery in a new tab, at desktop size (1366x900) or, parametrized so, at phone size (390x844);
    a test that fails leaves its screenshot in tests/e2e/artifacts."""
    page = browser.new_page()
    page.set_viewport_size(SIZES[getattr(request, "param", "desktop")])
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gallery_url + "/")
    expect(page.locator("body")).to_have_attribute("data-history", "loaded")  # earlier tests' photos listed
    expect(page.locator("body")).to_have_attribute("data-styles", "loaded")  # the styles from GET /styles
    yield page
    if getattr(request.node, "failed_call", False):  # set by tests/e2e/conftest.py
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"), full_page=True)
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
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT_MS)
    assert card.locator(".card-progress").evaluate("el => el.value") == 100
    tiles = card.locator(".tile")
    assert tiles.count() == len(STYLES)
    for style in STYLES:
        tile = card.locator(f'.tile[data-style="{style}"]')
        expect(tile).to_have_attribute("data-state", "done")
        expect(tile.locator(".tile-state")).to_have_text(re.compile(r"done in \d+ s"))
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


@BOTH_SIZES
def test_a_corrupt_photo_is_refused_once_for_the_upload_in_words(page: Page, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    data = CHELSEA.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    page.locator('input[name="style"][value="pencil"]').uncheck()
    page.locator('input[name="style"][value="oil"]').uncheck()
    page.set_input_files("#file-input", str(broken))
    card = page.locator('.card[data-file="broken.jpg"]').first
    expect(card).to_have_attribute("data-state", "refused", timeout=RENDER_TIMEOUT_MS)
    error = card.locator(".card-error")
    expect(error).to_contain_text("This file is damaged or incomplete")  # the sentence, once
    expect(error.locator(".reason-detail")).to_contain_text("the JPEG is truncated")  # the detail beside it
    expect(card.locator(".tiles")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-rejected.png"), full_page=True)


def test_a_file_the_api_refuses_shows_the_apis_reason(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#file-input", str(notes))
    card = page.locator('.card[data-file="notes.txt"]').first
    expect(card).to_have_attribute("data-state", "refused", timeout=30_000)
    expect(card.locator(".card-error")).to_contain_text("content type 'text/plain' is not accepted")


def _fake_status(page: Page, views: list[dict[str, Any]]) -> None:
    """Answer the page's status polls with ``views`` in turn (the last one repeated): the page's rendering
    of states the real stack passes through too fast to watch."""
    served = iter(views)
    last: list[dict[str, Any]] = []

    def answer(route: Route) -> None:
        view = next(served, None) or last[0]
        last[:] = [view]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(view))

    page.route("**/api/images/*", answer)


def _view(image_id: str, state: str, styles: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "state": state,
        "filename": "chelsea.jpg",
        "created_at": "2026-12-06T10:00:00Z",
        "urls_expire_at": "2026-12-06T11:00:00Z",
        "styles": styles,
    }


@BOTH_SIZES
def test_each_style_shows_its_progress_and_time_a_failure_in_words_and_an_untrained_model(
    page: Page,
) -> None:
    page.locator('input[name="style"][value="pencil"]').uncheck()
    page.locator('input[name="style"][value="watercolor"]').uncheck()
    ago = (datetime.now(UTC) - timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = {"state": "done", "started_at": ago, "finished_at": ago, "url": "", "download_url": "#"}
    _fake_status(
        page,
        [
            _view(
                "x",
                "processing",
                [
                    {"style": "sketch", "state": "rendering", "started_at": ago},
                    {"style": "oil", "state": "pending", "last_error": "SlowDown"},
                ],
            ),
            _view(
                "x",
                "processing",
                [
                    {"style": "sketch", "state": "rendering", "started_at": ago},
                    {"style": "oil", "state": "pending", "last_error": "SlowDown"},
                ],
            ),
            _view(
                "x",
                "complete",
                [
                    {"style": "sketch", **done, "model": "dev", "trained": False},
                    {
                        "style": "oil",
                        "state": "failed",
                        "reason": "timed_out",
                        "message": "the function ran past its 30 s",
                    },
                ],
            ),
        ],
    )
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    sketch, oil = card.locator('.tile[data-style="sketch"]'), card.locator('.tile[data-style="oil"]')
    expect(sketch.locator(".tile-state")).to_have_text(re.compile(r"rendering, 1[2-9] s"))
    expect(oil.locator(".tile-state")).to_have_text("retrying after an error")
    expect(card).to_have_attribute("data-state", "problem", timeout=30_000)
    expect(sketch.locator(".tile-untrained")).to_be_visible()
    expect(oil.locator(".tile-reason")).to_contain_text("took longer than its time limit")
    expect(oil.locator(".tile-reason .reason-detail")).to_contain_text("ran past its 30 s")


@BOTH_SIZES
def test_a_network_failure_is_said_in_words(page: Page) -> None:
    page.route("**/api/uploads", lambda route: route.abort("internetdisconnected"))
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card).to_have_attribute("data-state", "refused", timeout=30_000)
    expect(card.locator(".card-error")).to_have_text(
        "Atelier could not be reached. Check your connection and try again."
    )


def test_keyboard_users_see_where_they_are_and_skip_the_hidden_file_input(page: Page) -> None:
    page.locator('input[name="style"]').last.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"  # not the invisible file input
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT_MS)
    names = card.locator(".compare-range").evaluate_all("rs => rs.map(r => r.getAttribute('aria-label'))")
    assert len(set(names)) == len(names) and all("chelsea.jpg" in n for n in names)
    slider = card.locator('.tile[data-style="oil"] .compare-range')
    slider.focus()
    page.keyboard.press("ArrowLeft")  # a keyboard focus, so :focus-visible holds
    ring = card.locator('.tile[data-style="oil"] .compare').evaluate(
        "el => getComputedStyle(el).outlineStyle"
    )
    assert ring == "solid"
    assert card.locator(".card-progress").get_attribute("aria-label") == "Upload progress of chelsea.jpg"


def test_the_page_has_a_favicon_and_no_missing_file(browser: BrowserContext, gallery_url: str) -> None:
    page = browser.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(gallery_url + "/")
    page.wait_for_load_state("networkidle")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and page.request.get(f"{gallery_url}/{icon}").status == 200
    page.close()
    assert missing == []


AXE = ROOT / "tests" / "e2e" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)], ids=["desktop", "phone"])
def test_axe_finds_no_serious_or_critical_violation(
    page: Page, tmp_path: Path, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(CHELSEA.read_bytes()[:5000])
    page.set_input_files("#file-input", [str(CHELSEA), str(broken)])
    expect(page.locator('.card[data-file="chelsea.jpg"]').first).to_have_attribute(
        "data-state", "done", timeout=RENDER_TIMEOUT_MS
    )
    expect(page.locator('.card[data-file="broken.jpg"]').first).to_have_attribute(
        "data-state", "refused", timeout=RENDER_TIMEOUT_MS
    )
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    if serious:
        page.screenshot(path=str(ARTIFACTS / f"axe-{width}x{height}.png"), full_page=True)
    assert serious == []


@BOTH_SIZES
def test_the_history_survives_a_reload_and_renews_its_links(page: Page) -> None:
    page.locator('input[name="style"][value="pencil"]').uncheck()
    page.locator('input[name="style"][value="oil"]').uncheck()
    page.locator('input[name="style"][value="watercolor"]').uncheck()
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT_MS)
    image_id = card.get_attribute("data-image-id")
    page.clock.install()  # the page's timers, so the links' renewal can be brought forward
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-history", "loaded")
    again = page.locator(f'.card[data-image-id="{image_id}"]')
    expect(again).to_have_attribute("data-state", "done")
    tile = again.locator('.tile[data-style="sketch"]')
    expect(tile).to_have_attribute("data-state", "done")
    for img in (".compare-after", ".compare-before"):  # the render and the original, both from the API
        expect(tile.locator(img)).to_be_visible()
        assert tile.locator(img).evaluate("i => i.complete && i.naturalWidth") == 451
    assert tile.locator("a.tile-download").get_attribute("download") == "chelsea-sketch.jpg"
    first_url = tile.locator(".compare-after").get_attribute("src") or ""
    page.wait_for_timeout(1100)  # a new signature needs a new second on the server
    page.clock.fast_forward("30:00")  # past urls_expire_at, less the minute the page keeps in hand
    expect(tile.locator(".compare-after")).not_to_have_attribute("src", first_url, timeout=15_000)
    assert tile.locator(".compare-after").evaluate("i => i.complete && i.naturalWidth") == 451


@BOTH_SIZES
def test_the_full_view_shows_the_full_render_beside_its_original_by_mouse_keyboard_and_touch(
    page: Page,
) -> None:
    for style in ("sketch", "pencil", "watercolor"):
        page.locator(f'input[name="style"][value="{style}"]').uncheck()
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT_MS)
    tile = card.locator('.tile[data-style="oil"]')
    assert "/renders/previews/" in (tile.locator(".compare-after").get_attribute("src") or "")  # the tile
    tile.locator(".tile-open").click()
    dialog = page.locator("#viewer")
    expect(dialog).to_be_visible()
    after = dialog.locator(".compare-after")
    assert re.search(r"/renders/[^/]+/oil\.jpg", after.get_attribute("src") or "")  # the full render
    expect(page.locator("#viewer-title")).to_have_text("Oil painting of chelsea.jpg")
    expect(after).to_have_js_property("complete", True)
    compare = dialog.locator(".viewer-compare")

    def pos() -> str:
        return str(compare.evaluate("el => el.style.getPropertyValue('--pos')"))

    page.keyboard.press("ArrowLeft")  # the slider has the focus
    assert pos() == "49%"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-fit.png"))
    page.keyboard.press("z")  # 100 %: the render at its own size
    expect(page.locator("#viewer-stage")).to_have_attribute("data-zoom", "full")
    assert after.evaluate("i => Math.round(i.getBoundingClientRect().width)") == 451
    page.screenshot(path=str(ARTIFACTS / "viewer-full.png"))
    page.locator("#viewer-zoom").click()  # back to fitted: as wide as the stage allows
    expect(page.locator("#viewer-stage")).to_have_attribute("data-zoom", "fit")
    box = page.locator("#viewer-stage").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, y, steps=5)
    page.mouse.up()
    assert 15 <= float(pos().rstrip("%")) <= 25
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
    x0, x1 = box["x"] + box["width"] * 0.2, box["x"] + box["width"] * 0.8
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y}]})
    for step in range(1, 6):
        point = {"x": x0 + (x1 - x0) * step / 5, "y": y}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert 75 <= float(pos().rstrip("%")) <= 85
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


@BOTH_SIZES
def test_every_option_is_offered_and_sent_with_the_upload(page: Page) -> None:
    for style in ("sketch", "pencil", "oil", "watercolor"):  # each with its example
        example = page.locator(f'.style-choice:has(input[value="{style}"]) img.style-example')
        expect(example).to_be_visible()
        assert example.evaluate("i => i.complete && i.naturalWidth") == 240
    for style in ("anime", "upscale"):  # offered, off until chosen, said in words
        expect(page.locator(f'input[name="style"][value="{style}"]')).not_to_be_checked()
        expect(page.locator(f'.style-choice:has(input[value="{style}"]) .style-note')).to_be_visible()
    page.locator('input[name="style"][value="anime"]').check()
    models = page.locator("#opt-anime-model option").all_text_contents()
    assert "face_paint_512_v2" in models and "animeganv2-dev (untrained)" in models
    page.select_option("#opt-anime-model", "paprika")
    page.locator('input[name="style"][value="upscale"]').check()
    assert page.locator("#opt-upscale-factor option").all_text_contents() == ["x2", "x3", "x4"]
    page.select_option("#opt-upscale-factor", "3")
    page.locator("#opt-oil-strength").fill("0.8")
    page.locator('input[name="style"][value="pencil"]').uncheck()
    sent: list[dict[str, Any]] = []

    def capture(route: Route) -> None:
        sent.append(json.loads(route.request.post_data or "{}"))
        route.continue_()

    page.route("**/api/uploads", capture)
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    expect(card.locator('.tile[data-style="upscale"]')).to_be_visible()
    assert sent and sent[0]["styles"] == ["sketch", "oil", "watercolor", "anime", "upscale"]
    # only what differs from the style's own default travels: oil's strength, the model, the factor
    assert sent[0]["options"] == {
        "oil": {"strength": 0.8},
        "anime": {"model": "paprika"},
        "upscale": {"factor": 3},
    }
    expect(card.locator('.tile[data-style="oil"]')).to_have_attribute(
        "data-state", "done", timeout=RENDER_TIMEOUT_MS
    )


@BOTH_SIZES
def test_a_failed_style_can_be_tried_again(page: Page) -> None:
    """On this stack the anime model is not installed, so anime fails at once: a real failure to retry."""
    for style in ("sketch", "pencil", "oil", "watercolor"):
        page.locator(f'input[name="style"][value="{style}"]').uncheck()
    page.locator('input[name="style"][value="anime"]').check()
    page.set_input_files("#file-input", str(CHELSEA))
    card = page.locator('.card[data-file="chelsea.jpg"]').first
    tile = card.locator('.tile[data-style="anime"]')
    expect(tile).to_have_attribute("data-state", "failed", timeout=RENDER_TIMEOUT_MS)
    expect(tile.locator(".tile-reason")).to_contain_text("not installed on the server")
    with page.expect_response(lambda r: r.url.endswith("/retry")) as retried:
        tile.locator(".tile-retry").click()
    assert retried.value.status == 202
    assert retried.value.request.post_data_json == {"style": "anime"}
    # a new job: it fails again for the same reason, and can be tried again
    expect(tile).to_have_attribute("data-state", "failed", timeout=RENDER_TIMEOUT_MS)
    expect(tile.locator(".tile-retry")).to_be_visible()


@BOTH_SIZES
def test_an_upload_in_progress_can_be_cancelled_and_a_card_dismissed(page: Page, tmp_path: Path) -> None:
    big = tmp_path / "big.png"  # a few MB, sent at a crawl, so the upload is still going when cancelled
    big.write_bytes(imaging.png(imaging.photo(1600, 1200)))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    slow = {"offline": False, "latency": 20, "downloadThroughput": 10_000_000, "uploadThroughput": 100_000}
    cdp.send("Network.emulateNetworkConditions", slow)
    page.set_input_files("#file-input", str(big))
    card = page.locator('.card[data-file="big.png"]').first
    cancel = card.locator(".card-cancel")
    expect(cancel).to_be_visible()
    expect(card.locator(".card-progress")).not_to_have_js_property("value", 0, timeout=30_000)
    cancel.click()
    expect(card).to_have_attribute("data-state", "cancelled")
    expect(card.locator(".card-error")).to_have_text("Upload cancelled.")
    expect(cancel).to_be_hidden()
    cdp.send("Network.emulateNetworkConditions", {**slow, "uploadThroughput": -1, "latency": 0})
    image_id = card.get_attribute("data-image-id")
    card.locator(".card-dismiss").click()
    expect(page.locator(f'.card[data-image-id="{image_id}"]')).to_have_count(0)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-history", "loaded")
    expect(page.locator(f'.card[data-image-id="{image_id}"]')).to_have_count(0)  # still dismissed
