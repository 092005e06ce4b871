"""
Takes C{docs/status.png}: the status page at a desktop size, showing the
scripted tunnel of C{tests/loopback/statusserver.py} (realistic, made-up
data), in headless Chromium through Selenium (as the browser tests)::

    .venv/bin/python docs/screenshot.py [PATH] [--dark] [--width 1280]
"""

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.loopback.browser import Browser  # noqa: E402 (after the path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("path", nargs="?", default=os.path.join(ROOT, "docs", "status.png"))
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "loopback", "statusserver.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        match = re.match(r"status page listening on (\S+)", server.stdout.readline())
        if match is None:
            raise SystemExit("the status server did not start")
        browser = Browser(args.width, args.height)
        try:
            browser.emulate_media(prefers_color_scheme="dark" if args.dark else "light")
            browser.open("http://{}/".format(match.group(1)))
            browser.wait(lambda: browser.attribute("#live", "data-state") == "live", "the page is not live")
            time.sleep(2)  # a few updates, so that the page is as a visitor sees it
            browser.screenshot(args.path)
        finally:
            browser.quit()
    finally:
        server.stdin.close()
        server.wait(10)
    print("wrote", args.path)


if __name__ == "__main__":
    main()
