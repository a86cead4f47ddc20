"""The web console in a real browser: Debian's headless Chromium, driven by Playwright for
Python (pointed at /usr/bin/chromium; Playwright's own browser download is never used).

Run by tests/it/console.rs against a real `serve`, which passes what it needs in the
environment (never as arguments: tokens are secrets):

  CONSOLE_BASE       the server's URL
  CONSOLE_TOKENS     JSON: {"viewer": "tdm_...", "operator": ..., "admin": ..., "auditor": ...}
  CONSOLE_OUT        a folder for screenshots and the report (report.json)
  AXE_JS             axe-core's axe.min.js

Each step asserts what a person would see; the report says what was observed (progress
values seen, axe violations by page) for the Rust side to check too.
"""

import json
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_BASE"]
TOKENS = json.loads(os.environ["CONSOLE_TOKENS"])
OUT = os.environ["CONSOLE_OUT"]
AXE = open(os.environ["AXE_JS"], encoding="utf-8").read()
report = {"axe": {}, "progress_seen": [], "steps": []}


def step(name):
    report["steps"].append(name)
    print("step:", name, flush=True)


def axe(page, name):
    """axe-core in the page (injected past the page's CSP, which forbids scripts from
    elsewhere): the serious and critical violations."""
    page.add_script_tag(content=AXE)
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]
    report["axe"][name] = bad
    assert not bad, f"axe on {name}: {json.dumps(bad)}"


def sign_in(browser, role, width=1280):
    """A new browser (its own cookies) signed in as `role`. axe is injected as a script tag:
    these contexts let it past the CSP (which a page's own script would still meet)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(BASE + "/")
    expect(page.get_by_label("API token")).to_have_attribute("type", "password")
    page.get_by_label("API token").fill(TOKENS[role])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # The token is in no URL and in no storage the page's scripts can read.
    assert TOKENS[role] not in page.url
    assert page.evaluate("() => document.cookie") == "", "the session cookie is HttpOnly"
    assert page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    return page


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        axe_ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)

        step("sign-in page: accessible, no secrets")
        page = axe_ctx.new_page()
        page.goto(BASE + "/")
        axe(page, "sign-in")
        page.get_by_label("API token").fill("tdm_not_a_token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("token")

        step("viewer: the overview's health, worst first; no action buttons")
        viewer = sign_in(browser, "viewer")
        rows = viewer.locator("table.overview tbody tr")
        expect(rows).to_have_count(3)
        names = [rows.nth(i).locator("th").inner_text().strip() for i in range(3)]
        states = [rows.nth(i).locator(".badge").inner_text().strip() for i in range(3)]
        report["overview"] = dict(zip(names, states))
        assert states == ["failing", "stale", "healthy"], states
        axe(viewer, "overview")
        viewer.screenshot(path=os.path.join(OUT, "console-overview.png"), full_page=True)
        viewer.goto(BASE + "/w/shop")
        expect(viewer.get_by_role("heading", name="Snapshots")).to_be_visible()
        assert viewer.locator("form[action^='/act/']").count() == 0, "a viewer sees no action"
        assert viewer.get_by_role("button", name=re.compile("Take a snapshot|Pin|Restore|Run a drill")).count() == 0
        axe(viewer, "workspace (viewer)")

        step("viewer: a function stack's versions and its diff; a refusal's page")
        viewer.get_by_role("link", name="api/checkout").click()
        expect(viewer.get_by_role("heading", name="Versions")).to_be_visible()
        expect(viewer.locator("ul.diff")).to_contain_text("ship")
        axe(viewer, "stack")
        viewer.goto(BASE + "/w/nope")
        expect(viewer.get_by_role("alert")).to_be_visible()
        axe(viewer, "refusal")

        step("developer: reads, and has no backup action")
        developer = sign_in(browser, "developer")
        developer.goto(BASE + "/w/shop")
        assert developer.locator("form[action^='/act/']").count() == 0, "a developer takes no backup action here"

        step("operator: a snapshot from the page, its progress seen moving, to success")
        operator = sign_in(browser, "operator")
        operator.goto(BASE + "/w/shop")
        assert operator.get_by_role("button", name="Restore in place").count() == 0, "in place is the admin's"
        operator.get_by_label("Note").fill("from the console")
        operator.get_by_role("button", name="Take a snapshot").click()
        expect(operator).to_have_url(re.compile(r"/jobs/\d+$"))
        deadline = time.time() + 120
        status = ""
        # One read of the page at a time (the section is replaced as it refreshes).
        sample = """() => {
            const q = (s) => document.querySelector(s);
            const bar = q("#job progress"), phase = q("#job .phase"), st = q("#job .status");
            return [st ? st.textContent.trim() : "", bar ? bar.getAttribute("value") : null,
                    bar ? bar.getAttribute("max") : null, phase ? phase.textContent : ""];
        }"""
        while time.time() < deadline:
            status, value, top, phase = operator.evaluate(sample)
            if value is not None:
                seen = [value, top, phase]
                if not report["progress_seen"] or report["progress_seen"][-1] != seen:
                    report["progress_seen"].append(seen)
            if status and status != "running":
                break
            time.sleep(0.05)
        assert status == "succeeded", f"the snapshot job ended {status}"
        axe(operator, "job")
        operator.goto(BASE + "/w/shop")
        expect(operator.locator("#snapshots")).to_contain_text("from the console")
        expect(operator.locator("#snapshots")).to_contain_text("verified")
        expect(operator.locator("#snapshots")).to_contain_text("kept")

        step("admin: in place needs the typed name; then undo")
        admin = sign_in(browser, "admin")
        admin.goto(BASE + "/w/shop")
        axe(admin, "workspace (admin)")
        admin.screenshot(path=os.path.join(OUT, "console-workspace.png"), full_page=True)
        in_place = admin.get_by_role("button", name="Restore in place")
        expect(in_place).to_be_disabled()
        admin.get_by_label(re.compile("to replace its live database")).fill("sho")
        expect(in_place).to_be_disabled()
        admin.get_by_label(re.compile("to replace its live database")).fill("shop")
        expect(in_place).to_be_enabled()
        in_place.click()
        expect(admin).to_have_url(re.compile(r"/jobs/\d+$"))
        expect(admin.locator("#job .status")).to_have_text("succeeded", timeout=120_000)
        report["in_place_job"] = admin.url
        admin.goto(BASE + "/w/shop")
        undo = admin.get_by_role("button", name="Undo the last in-place restore")
        expect(undo).to_be_disabled()
        admin.get_by_label(re.compile("swap the previous database back")).fill("shop")
        undo.click()
        expect(admin).to_have_url(re.compile(r"/jobs/\d+$"))
        expect(admin.locator("#job .status")).to_have_text("succeeded", timeout=120_000)
        report["undo_job"] = admin.url

        step("admin: tokens made (secret once), listed, revoked")
        admin.goto(BASE + "/tokens")
        axe(admin, "tokens")
        admin.get_by_label("Name").fill("made-in-console")
        admin.get_by_label("Role").select_option("viewer")
        admin.get_by_role("button", name="Make the token").click()
        secret = admin.get_by_label("Secret").input_value()
        assert secret.startswith("tdm_"), "the new token's secret is shown"
        axe(admin, "token made")
        report["made_token_shown"] = True
        admin.goto(BASE + "/tokens")
        assert secret not in admin.content(), "the secret is shown only once"
        row = admin.locator("tr", has_text="made-in-console")
        row.get_by_role("button", name="Revoke").click()
        expect(admin.locator("tr", has_text="made-in-console")).to_contain_text("revoked")

        step("auditor: the trail with filters, verified")
        auditor = sign_in(browser, "auditor")
        auditor.goto(BASE + "/audit")
        auditor.get_by_label("Action").fill("console.sign-in")
        auditor.get_by_role("button", name="Filter and verify the trail").click()
        expect(auditor.get_by_role("status")).to_contain_text("Verification")
        rows = auditor.locator("tbody tr")
        assert rows.count() >= 4, "every role signed in"
        actions = {rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())}
        assert actions == {"console.sign-in"}, f"the filter keeps its action only: {actions}"
        axe(auditor, "audit")

        step("360 px wide: the overview reads without sideways scrolling")
        small = sign_in(browser, "viewer", width=360)
        width = small.evaluate("() => document.documentElement.scrollWidth")
        report["width_at_360"] = width
        small.screenshot(path=os.path.join(OUT, "console-360.png"), full_page=True)
        assert width <= 360, f"the overview is {width} px wide at 360"

        step("keyboard: the skip link is the first stop, sign-out is reachable")
        small.keyboard.press("Tab")
        assert small.evaluate("() => document.activeElement.textContent") == "Skip to content"

        step("without JavaScript: the read pages read the same")
        plain_ctx = browser.new_context(java_script_enabled=False, bypass_csp=True)
        plain = plain_ctx.new_page()
        plain.goto(BASE + "/")
        plain.get_by_label("API token").fill(TOKENS["viewer"])
        plain.get_by_role("button", name="Sign in").click()
        expect(plain.locator("table.overview tbody tr")).to_have_count(3)
        plain.goto(BASE + "/w/shop")
        expect(plain.locator("#snapshots tbody tr").first).to_be_visible()
        expect(plain.locator("#jobs")).to_contain_text("snapshot")

        step("sign-out ends the session")
        admin.get_by_role("button", name="Sign out").click()
        admin.goto(BASE + "/w/shop")
        expect(admin.get_by_label("API token")).to_be_visible()

        browser.close()


try:
    main()
    report["ok"] = True
finally:
    with open(os.path.join(OUT, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
