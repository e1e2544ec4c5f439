"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright, against the app
on loopback with the emulator. Screenshots of every page go to the test's tmp folder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from tests.api.conftest import ApiServer

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_web_page_compose_generate_favorite_extract(api: ApiServer, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Compose: categories found and the explanation appear as you type.
    page.goto(api.url + "/#/compose")
    page.fill("#compose-input", "a red @car at night")
    expect(page.locator("#compose-found li[data-id=car]")).to_be_visible()
    expect(page.locator("#compose-found li[data-id=night]")).to_be_visible()
    expect(page.locator("#compose-summary")).to_contain_text("explicit")
    expect(page.locator("#compose-steps li").first).to_be_visible()
    page.screenshot(path=str(shots / "compose.png"), full_page=True)

    page.goto(api.url + "/#/categories")
    expect(page.locator("#cat-list li").first).to_be_visible()
    page.fill("#cat-search", "fog")
    expect(page.locator("#cat-list li").first).to_contain_text("fog")
    page.screenshot(path=str(shots / "categories.png"), full_page=True)

    # Generate: the progress bar reaches 100 % and the image is shown with its scores.
    page.goto(api.url + "/#/generate")
    page.fill("#gen-prompt", "<b>bold</b> lighthouse")
    page.fill("#gen-workflow", "tiny-sd15")
    page.fill("#gen-steps", "3")
    page.click("#gen-submit")
    expect(page.locator("#gen-percent")).to_have_text("100 %")
    expect(page.locator("#gen-status")).to_have_text("completed")
    expect(page.locator("#gen-image img[data-loaded='1']")).to_be_visible()
    expect(page.locator("#gen-scores")).to_contain_text("unvalidated")
    page.screenshot(path=str(shots / "generate.png"), full_page=True)
    page.click("#gen-favorite")
    expect(page.locator("#gen-favorite")).to_have_text("Favorited")

    # Gallery: user text shown as text, never as HTML.
    page.goto(api.url + "/#/gallery")
    card = page.locator("#gallery .card").first
    expect(card).to_contain_text("<b>bold</b> lighthouse")
    assert page.locator("#gallery b").count() == 0
    expect(card.locator("img[data-loaded='1']")).to_be_visible()
    page.screenshot(path=str(shots / "gallery.png"), full_page=True)

    # The favorite survives a reload; extract-recipe saves a recipe that validates.
    page.goto(api.url + "/#/favorites")
    page.reload()
    favorite = page.locator("#favorites .card.favorite")
    expect(favorite).to_have_count(1)
    favorite.locator(".recipe-name").fill("from-browser")
    favorite.locator(".extract").click()
    expect(page.locator("#extract-saved")).to_contain_text("recipes/from-browser.yaml")
    page.screenshot(path=str(shots / "favorites.png"), full_page=True)
    saved = api.settings.recipes_dir / "from-browser.yaml"
    from comfy_gen.cli import cli

    result = CliRunner().invoke(cli, ["recipe", "validate", str(saved)])
    assert result.exit_code == 0, result.output

    page.goto(api.url + "/#/runs")
    expect(page.locator("#recipes")).to_contain_text("tiny: Two seeds")
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    assert errors == []
    assert sorted(p.name for p in shots.iterdir()) == ["categories.png", "compose.png", "favorites.png",
                                                       "gallery.png", "generate.png", "runs.png"]
