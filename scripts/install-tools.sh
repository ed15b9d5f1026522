#!/usr/bin/env bash
# Installs the chain tooling from the npm registry into .tools/ (ignored by git), pinned.
#   scripts/install-tools.sh solc     the Solidity compiler (solcjs)
#   scripts/install-tools.sh anvil    the local Ethereum node (.tools/anvil/.../bin/anvil)
#   scripts/install-tools.sh chromium Debian's chromium (/usr/bin/chromium), for the dashboard's
#                                     browser test; apt-get, so root
# Idempotent: does nothing when the tool is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
SOLC_VERSION=0.8.37
ANVIL_VERSION=1.7.1

install_chromium() {
    command -v chromium >/dev/null && return
    [ "$(id -u)" = 0 ] || { echo "error: Debian's chromium is installed with apt-get, which needs root: run this as root, or apt-get install chromium" >&2; exit 1; }
    command -v apt-get >/dev/null || { echo "error: no apt-get: install chromium (it must be on PATH as 'chromium')" >&2; exit 1; }
    echo "installing chromium with apt-get" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
}

install_npm() { # dir package version
    local dir="$root/.tools/$1" package="$2" version="$3"
    if [ -f "$dir/node_modules/$package/package.json" ] &&
        grep -q "\"version\": \"$version\"" "$dir/node_modules/$package/package.json"; then
        return
    fi
    command -v npm >/dev/null || { echo "error: npm is needed to install $package (Node.js 18+)" >&2; exit 1; }
    echo "installing $package@$version into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "$package@$version" >&2
}

# Concurrent callers (tests run in parallel) install one at a time.
mkdir -p "$root/.tools"
if command -v flock >/dev/null; then
    exec 9>"$root/.tools/.lock"
    flock 9
fi

for tool in "$@"; do
    case "$tool" in
        solc) install_npm solc solc "$SOLC_VERSION" ;;
        anvil)
            [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
                { echo "error: the pinned anvil package is for Linux x86_64 only" >&2; exit 1; }
            install_npm anvil @foundry-rs/anvil-linux-amd64 "$ANVIL_VERSION"
            chmod +x "$root/.tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ;;
        chromium) install_chromium ;;
        *) echo "error: unknown tool '$tool' (known: solc, anvil, chromium)" >&2; exit 2 ;;
    esac
done
