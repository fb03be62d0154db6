# Shared by demo.sh, bench.sh and bench-remix.sh: the release binaries' directory, a free
# loopback port and a signalling server on it.
# Sourced, not run. Callers keep a `pids` array and kill it on exit.

# Where `cargo build --release` put callrec and callrec-testpeer (both workspace members).
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_signalling PORT LOGFILE: starts gst-webrtc-signalling-server and waits until it listens.
start_signalling() {
  gst-webrtc-signalling-server --host 127.0.0.1 --port "$1" >"$2" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "the signalling server did not start; see $2" >&2
  return 1
}
