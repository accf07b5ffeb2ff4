"""Regenerate the dashboard's screenshots in docs/img/ (``make screenshots``).

Builds the demo project (or reuses one given with ``--project``), serves it with ``segone
serve``, logs in with Debian's Chromium and saves one PNG per page, plus a customer 360.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.web_support import PAGES, launch, login, make_project, serve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument(
        "--project", type=Path, help="an existing project made by a previous run (kept)"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.project or Path(tmp) / "demo"
        if not (root / "segone.toml").exists():
            print(f"building a demo project of {args.customers:,} customers in {root}")
            make_project(root, customers=args.customers)
        from playwright.sync_api import sync_playwright

        with serve(root, Path(tmp) / "serve.log") as url, sync_playwright() as pw:
            browser = launch(pw)
            ctx = browser.new_context(viewport={"width": 1360, "height": 900})  # type: ignore[attr-defined]
            page = ctx.new_page()
            page.goto(f"{url}/login")
            page.screenshot(path=str(args.out / "dashboard-login.png"))
            login(page, url)
            for name, path in PAGES:
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1200)  # charts finish their entry animation
                page.screenshot(path=str(args.out / f"dashboard-{name}.png"), full_page=True)
                print(f"dashboard-{name}.png")
            first = page.locator("table.results a").first
            page.goto(f"{url}/customers?q=a")
            first.click()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1200)
            page.screenshot(path=str(args.out / "dashboard-customer.png"), full_page=True)
            print("dashboard-customer.png")
            browser.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
