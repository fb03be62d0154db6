#!/usr/bin/env bash
# Installs what callrec needs on Debian 12 to build, run its tests and its demo:
# a C toolchain, GStreamer (dev packages and plugins), ffmpeg (ffprobe, for verifying
# recordings), iproute2, nftables and iptables (the packet loss test's network namespace: loss
# by nftables, delay through iptables' NFQUEUE target), the real servers and browsers the
# tests record from (Janus with its tools, and janus.js with the webrtc-adapter it needs for
# the browser test's Janus page; headless Chromium and Firefox ESR),
# Rust (rustup, if there is no cargo) and the real gst-webrtc-signalling-server.
# Idempotent: skips what is already there.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

PACKAGES=(
  build-essential curl ca-certificates pkg-config libssl-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools
  gstreamer1.0-x
  ffmpeg
  iproute2 nftables iptables
  janus janus-tools libjs-janus-gateway libjs-webrtc-adapter
  chromium chromium-driver firefox-esr
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${CALLREC_FORCE_APT:-}" = 1 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# Debian starts the janus service on install where systemd runs; the tests start their own
# Janus on ports of their own, so the system one would only cost CPU.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet janus 2>/dev/null; then
  systemctl disable --now janus >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null 2>&1; then
  # The toolchain Cargo.toml's rust-version names, with the checks CI runs.
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain 1.95 --component rustfmt,clippy
fi

if ! command -v gst-webrtc-signalling-server >/dev/null 2>&1; then
  cargo install --locked gst-plugin-webrtc-signalling --version '^0.15'
fi
