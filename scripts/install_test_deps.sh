#!/bin/sh
# Installs the Debian packages the tests need, when missing: chromium (tests/test_report_browser.py
# renders the HTML report headless with it) and dataset-fashion-mnist (the real Fashion-MNIST files
# in /usr/share/datasets/fashion-mnist, read by tests/test_data_idx.py and tests/test_fashion_mnist_e2e.py).
# Part of the README's test command. One apt-get call installs both, so no two apt processes ever
# wait on each other's dpkg lock; a no-op when both are present.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing="$missing dataset-fashion-mnist"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null && exit 0
elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq $missing >/dev/null && exit 0
fi
echo "tests need Debian's$missing: apt-get install$missing" >&2
exit 1
