#!/usr/bin/env bash
# The test command: installs what a fresh Debian 12 machine lacks, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --locked -- --test-threads=1
