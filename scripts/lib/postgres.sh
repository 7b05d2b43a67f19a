# Finds or starts a PostgreSQL server for the tests and exports
# LATCHKEY_TEST_DATABASE_URL (an admin URL: tests create a database each).
#   1. LATCHKEY_TEST_DATABASE_URL, when already set;
#   2. a server on 127.0.0.1:5432 that accepts user postgres, when one answers;
#   3. else a throwaway cluster made with initdb/pg_ctl as an unprivileged
#      user, on a free port, stopped by postgres_stop.

postgres_find_bin() {
    local b
    for b in "$(command -v initdb 2>/dev/null)" /usr/lib/postgresql/*/bin/initdb /usr/local/pgsql/bin/initdb; do
        if [ -n "$b" ] && [ -x "$b" ]; then dirname "$b"; return 0; fi
    done
    return 1
}

postgres_start() {
    local dir=$1
    if [ -n "${LATCHKEY_TEST_DATABASE_URL:-}" ]; then
        echo "PostgreSQL: using LATCHKEY_TEST_DATABASE_URL"
        return 0
    fi
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -U postgres \
        && psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        export LATCHKEY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
        echo "PostgreSQL: using the server on 127.0.0.1:5432"
        return 0
    fi
    local bin
    if ! bin=$(postgres_find_bin); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "PostgreSQL: not installed; installing Debian's postgresql package"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
            bin=$(postgres_find_bin) || { echo "PostgreSQL: install failed" >&2; return 1; }
        else
            echo "PostgreSQL: no server answers and initdb is not installed; set LATCHKEY_TEST_DATABASE_URL" >&2
            return 1
        fi
    fi
    local port; port=$(free_port)
    mkdir -p "$dir"
    # initdb refuses to run as root: use an unprivileged account then.
    local run=()
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$dir" 2>/dev/null || true
        chmod 700 "$dir"
        run=(runuser -u nobody --)
    fi
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { echo "PostgreSQL: initdb failed:" >&2; cat "$dir/initdb.log" >&2; return 1; }
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
        || { echo "PostgreSQL: pg_ctl start failed:" >&2; cat "$dir/server.log" >&2; return 1; }
    POSTGRES_STOP=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop)
    export LATCHKEY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL: started a throwaway cluster on 127.0.0.1:$port"
}

postgres_stop() {
    if [ -n "${POSTGRES_STOP+x}" ]; then "${POSTGRES_STOP[@]}" >/dev/null 2>&1 || true; fi
}
