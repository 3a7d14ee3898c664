#!/usr/bin/env python3
"""Drives the operator console in a real headless Chromium (Selenium + chromedriver).

Run by tests/console.rs against a console it serves on 127.0.0.1; the Rust side seeds the
store and checks it afterwards. `--check` only says whether Selenium, Chromium and
chromedriver are here (exit 0) or what is missing (exit 3).

Steps: a page without a session leads to the login; a wrong token is refused; the token
logs in and the session cookie is HttpOnly and SameSite=Strict; every page loads; a
failure's Skip form with its CSRF field removed is refused (403 page) and a POST without
the session cookie is refused (401); Retry replays a failure; a mapping's target id is
edited; a screenshot of the runs page is saved.
"""

import argparse
import shutil
import sys
import urllib.error
import urllib.request

CHROMIUM = ["chromium", "chromium-browser", "google-chrome"]
DRIVER = ["chromedriver"]


def which(names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the Python package `selenium` is not installed"
    if not which(CHROMIUM):
        return "no chromium binary on PATH"
    if not which(DRIVER):
        return "no chromedriver on PATH (Debian: chromium-driver)"
    return None


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--retry", help="id of the failure to retry")
    parser.add_argument("--tamper", help="id of a failure to skip without the CSRF token")
    parser.add_argument("--source-id")
    parser.add_argument("--new-target")
    parser.add_argument("--screenshot")
    args = parser.parse_args()

    why = missing()
    if args.check:
        if why:
            print(why)
            sys.exit(3)
        print("browser test can run")
        return
    if why:
        fail(why)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def navigate(act):
        """Does `act` (a click or a form submit) and waits until the next page replaced this one."""
        page = driver.find_element(By.TAG_NAME, "html")
        act()
        WebDriverWait(driver, 20).until(expected_conditions.staleness_of(page))
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script("return document.readyState") == "complete")

    def click(by, what):
        navigate(lambda: driver.find_element(by, what).click())

    options = webdriver.ChromeOptions()
    options.binary_location = which(CHROMIUM)
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900", "--force-device-scale-factor=1"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(which(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    base = args.url.rstrip("/")
    try:
        # Without a session every page leads to the login.
        driver.get(f"{base}/console/failures")
        expect(driver.current_url.endswith("/console/login"), "no session: sent to the login page")

        # A wrong token is refused.
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        click(By.ID, "login")
        expect("not the server" in driver.page_source, "a wrong token is refused")

        # The operator token logs in.
        driver.find_element(By.ID, "token").send_keys(args.token)
        click(By.ID, "login")
        expect(driver.current_url.endswith("/console/"), "logged in: the runs page")
        cookie = driver.get_cookie("ferry_console")
        expect(cookie is not None, "a session cookie is set")
        expect(cookie.get("httpOnly") is True, "the session cookie is HttpOnly")
        expect(cookie.get("sameSite") == "Strict", "the session cookie is SameSite=Strict")
        expect(len(driver.find_elements(By.CSS_SELECTOR, "svg.plot rect")) > 1, "the runs plot is drawn")
        expect("inbox:" in driver.page_source, "the inbox depth is shown")

        # Every page loads.
        for path, heading in [("/console/", "Runs"), ("/console/failures", "Failures"),
                              ("/console/mappings", "Mappings")]:
            driver.get(base + path)
            expect(driver.find_element(By.TAG_NAME, "h1").text == heading, f"{path} loads")

        # A form whose CSRF field was removed is refused and changes nothing.
        driver.get(f"{base}/console/failures")
        button = driver.find_element(By.ID, f"skip-{args.tamper}")
        navigate(lambda: driver.execute_script(
            "const f = arguments[0].form; f.querySelector('input[name=csrf]').remove(); f.submit();",
            button,
        ))
        expect(driver.find_element(By.TAG_NAME, "h1").text == "Refused", "a change without the CSRF token: 403")

        # A POST without the session cookie is refused.
        request = urllib.request.Request(f"{base}/console/failures/{args.tamper}/resolve",
                                         data=b"csrf=x", method="POST")
        try:
            urllib.request.urlopen(request)
            fail("a POST without the session was accepted")
        except urllib.error.HTTPError as e:
            expect(e.code == 401, f"a change without the session: {e.code}")

        # Retry replays the failure through the engine.
        driver.get(f"{base}/console/failures")
        click(By.ID, f"retry-{args.retry}")
        notice = driver.find_element(By.CSS_SELECTOR, ".notice").text
        expect("replayed 1" in notice, f"retry: {notice}")
        expect(not driver.find_elements(By.ID, f"failure-{args.retry}"), "the retried failure left the list")

        # Edit a mapping found by its source id.
        driver.get(f"{base}/console/mappings")
        driver.find_element(By.ID, "source_id").send_keys(args.source_id)
        click(By.CSS_SELECTOR, "form[method=get] button")
        field = driver.find_element(By.CSS_SELECTOR, "input.edit-target")
        field.clear()
        field.send_keys(args.new_target)
        click(By.CSS_SELECTOR, "button.save")
        notice = driver.find_element(By.CSS_SELECTOR, ".notice").text
        expect(args.new_target in notice, f"mapping edited: {notice}")
        expect(driver.find_element(By.CSS_SELECTOR, "input.edit-target").get_attribute("value")
               == args.new_target, "the search shows the new target id")

        # The runs page, for the README.
        driver.set_window_size(1200, 600)
        driver.get(f"{base}/console/")
        expect(driver.save_screenshot(args.screenshot), f"screenshot saved to {args.screenshot}")

        # Logging out ends the session.
        click(By.ID, "logout")
        driver.get(f"{base}/console/")
        expect(driver.current_url.endswith("/console/login"), "logged out")
    finally:
        driver.quit()
    print("PASS")


if __name__ == "__main__":
    main()
