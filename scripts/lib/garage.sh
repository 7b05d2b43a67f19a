# Starts a throwaway single-node Garage on loopback and exports what the test
# suite needs to reach it. Sourced by scripts/test (and usable by hand:
# `source scripts/lib/garage.sh && garage_start /tmp/g && env | grep LATCHKEY_TEST`).
#
# Garage is installed with `cargo install garage --locked` when it is not on
# PATH; cargo keeps it in ~/.cargo/bin, so later runs reuse it. The build
# takes over 20 minutes on two cores, once.

GARAGE_VERSION=2.5.0

garage_ensure_installed() {
    if command -v garage >/dev/null 2>&1; then return 0; fi
    if [ -x "$HOME/.cargo/bin/garage" ]; then export PATH="$HOME/.cargo/bin:$PATH"; return 0; fi
    echo "garage is not installed: running cargo install garage --locked --version $GARAGE_VERSION (once; 20+ minutes on 2 cores)" >&2
    cargo install garage --locked --version "$GARAGE_VERSION" >&2
    export PATH="$HOME/.cargo/bin:$PATH"
}

# Prints a free loopback TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

garage_start() {
    local dir=$1
    garage_ensure_installed
    mkdir -p "$dir/meta" "$dir/data"
    local rpc s3 admin
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
    chmod 600 "$dir/garage.toml"
    garage -c "$dir/garage.toml" server > "$dir/garage.log" 2>&1 &
    GARAGE_PID=$!
    export GARAGE_PID
    local g="garage -c $dir/garage.toml"
    local node="" i
    # `node id` can answer from the key on disk before the daemon listens;
    # `status` needs the daemon's RPC, so wait for both.
    for i in $(seq 1 150); do
        node=$($g node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] \
            && $g status >/dev/null 2>&1 && break
        node=""
        if ! kill -0 "$GARAGE_PID" 2>/dev/null; then
            echo "garage exited at start; its log:" >&2; cat "$dir/garage.log" >&2; return 1
        fi
        sleep 0.2
    done
    [ -n "$node" ] || { echo "garage did not answer; its log:" >&2; cat "$dir/garage.log" >&2; return 1; }
    $g layout assign -z dc1 -c 1G "$node" >/dev/null
    $g layout apply --version 1 >/dev/null
    $g bucket create latchkey >/dev/null
    local keyinfo
    keyinfo=$($g key create latchkey-test)
    $g bucket allow --read --write --owner latchkey --key latchkey-test >/dev/null
    # Each test gets a bucket of its own.
    $g key allow --create-bucket latchkey-test >/dev/null
    export LATCHKEY_TEST_S3_ENDPOINT="http://127.0.0.1:$s3"
    export LATCHKEY_TEST_S3_REGION=garage
    export LATCHKEY_TEST_S3_BUCKET=latchkey
    LATCHKEY_TEST_S3_ACCESS_KEY=$(printf '%s\n' "$keyinfo" | awk '/Key ID:/ {print $3}')
    LATCHKEY_TEST_S3_SECRET_KEY=$(printf '%s\n' "$keyinfo" | awk '/Secret key:/ {print $3}')
    export LATCHKEY_TEST_S3_ACCESS_KEY LATCHKEY_TEST_S3_SECRET_KEY
    if [ -z "$LATCHKEY_TEST_S3_ACCESS_KEY" ] || [ -z "$LATCHKEY_TEST_S3_SECRET_KEY" ]; then
        echo "could not read the key garage created:" >&2; printf '%s\n' "$keyinfo" | sed 's/Secret key:.*/Secret key: [hidden]/' >&2; return 1
    fi
    # Wait until the S3 API answers (the layout takes a moment to settle).
    for i in $(seq 1 100); do
        curl -s -o /dev/null "$LATCHKEY_TEST_S3_ENDPOINT" && return 0
        sleep 0.2
    done
    echo "garage's S3 API did not come up; its log:" >&2; cat "$dir/garage.log" >&2; return 1
}

garage_stop() {
    if [ -n "${GARAGE_PID:-}" ]; then kill "$GARAGE_PID" 2>/dev/null || true; wait "$GARAGE_PID" 2>/dev/null || true; fi
}
