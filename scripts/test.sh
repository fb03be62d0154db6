#!/usr/bin/env bash
# The test command: installs what a fresh Debian 12 machine lacks, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The test peer is a crate of its own (testpeer/): build it first, so that a broken peer fails
# here, loudly, and the tests find it up to date (they would build it themselves otherwise).
cargo build --locked -p callrec-testpeer
cargo test --locked --workspace -- --test-threads=1
