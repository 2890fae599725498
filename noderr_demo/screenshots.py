"""The admin's view of the live network, captured in a real browser (Debian's chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def capture_admin_pages(base_url: str, email: str, password: str, node_id: str,
                        target: Path) -> dict[str, object]:
    """Log in like an admin, open the overview and a node page; returns what the pages show."""
    from playwright.sync_api import sync_playwright

    target.mkdir(parents=True, exist_ok=True)
    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base_url}/admin/login")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", password)
            page.click("form[action='/admin/login'] button[type=submit]")
            page.wait_for_url(f"{base_url}/admin**")
            page.goto(f"{base_url}/admin")
            seen["nodes_online"] = int(page.inner_text("#nodes-online").strip())
            page.screenshot(path=str(target / "network-overview.png"), full_page=True)
            page.goto(f"{base_url}/admin/nodes/{node_id}")
            seen["node_page_has_id"] = node_id in page.content()
            page.screenshot(path=str(target / "node-page.png"), full_page=True)
            page.goto(f"{base_url}/admin/applications")
            page.screenshot(path=str(target / "applications.png"), full_page=True)
        finally:
            browser.close()
    return seen
