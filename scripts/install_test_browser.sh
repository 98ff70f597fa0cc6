#!/bin/sh
# Makes sure the headless browser the report test renders with is installed (Debian's chromium).
# Part of the README's test command: a no-op when chromium is already on PATH.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null && exit 0
elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null && exit 0
fi
echo "tests need Debian's chromium for tests/test_report_browser.py: apt-get install chromium" >&2
exit 1
