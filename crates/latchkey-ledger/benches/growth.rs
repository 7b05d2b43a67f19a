//! Ledger growth (issue 9): does a create, a complete and a reconciler pass
//! cost the same at 10k, 100k and 1M rows, on SQLite and on PostgreSQL?
//!
//! ```text
//! cargo bench -p latchkey-ledger --bench growth
//! LEDGER_BENCH_SIZES=10000,100000 LEDGER_BENCH_BACKENDS=sqlite cargo bench -p latchkey-ledger --bench growth
//! ```
//!
//! Settings (environment): `LEDGER_BENCH_SIZES` (rows, ascending; default
//! `10000,100000,1000000`), `LEDGER_BENCH_BACKENDS` (`sqlite,postgres`),
//! `LEDGER_BENCH_OPS` (timed creates and completes per size, 2000),
//! `LEDGER_BENCH_PASSES` (reconciler passes per size, 50),
//! `LEDGER_BENCH_USERS` (20), and `LATCHKEY_TEST_DATABASE_URL` for the
//! PostgreSQL server (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! on which a fresh `latchkey_bench_<random>` database is created and
//! dropped afterwards. SQLite is a file in a temp dir. Both are opened
//! through `latchkey_ledger::connect_with` with the default options, i.e.
//! exactly the pool, pragmas and migrations `latchkey serve` uses.
//!
//! Filling is not what is measured: rows go in by multi-row INSERTs on a
//! side connection (SQLite `synchronous = OFF`, PostgreSQL
//! `synchronous_commit = off`) in large transactions. The mix:
//! - **history**, which grows with the table: 87% committed (photos
//!   attached; 30% of documents attached, the rest never need it), 6%
//!   expired, 4% deleted, 2% rejected, 1% aborted; one webhook event per
//!   row, delivered, 0.1% of them dead letters; half the rows with an
//!   idempotency key and a sha256; `LEDGER_BENCH_USERS` users, 70% in the
//!   `photo` profile (attach required), 30% in `doc`.
//! - **queues**, a fixed size whatever the table's (they scale with traffic,
//!   not with history): 400 pending rows past expiry (two reconciler pages),
//!   200 live pending, 20 processing, 400 unattached photos past their TTL,
//!   100 undelivered webhook events. Before each larger size the previous
//!   queues are settled in place (what the workers would have done), so
//!   queue rows are always the newest.
//!
//! Measured at each size, one client, sequentially:
//! - **create**: `insert` of a pending upload with an idempotency key;
//!   **create+quota**: the same with a quota (reading the usage counter);
//! - **complete**: the commit `transition` (pending → committed, with the
//!   outbox row), of the rows `create` made;
//! - **reconciler pass**: the ledger calls of one pass of the reconciler,
//!   the orphan sweep and the two claim workers, with their page sizes:
//!   `try_lease`, `expired(pending, 200)`, `committed_unattached(photo,
//!   200)`, `claim_processing(2)`, `outbox_claim(8)`, 500 `find_by_key`
//!   (one sweep page, random existing keys) and `release_lease`. Claims use a
//!   zero lease so every pass claims the same rows again. "rows" is what the
//!   pass got back plus the 500 keys looked up.
//!
//! Then the query plans of the hot queries (`EXPLAIN QUERY PLAN`; on
//! PostgreSQL `EXPLAIN` with the values inlined, as the first executions
//! plan it, and the generic plan a prepared statement settles on), with
//! every full scan flagged. The SQL is copied from `src/sqlite` and
//! `src/postgres`; keep it in step.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes one
//! tiny pass on SQLite only, as a smoke check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_domain::{
    ContentType, Mode, ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId,
};
use latchkey_ledger::{Changes, OpenOptions, Quota, UploadRepo};
use sqlx::{Connection, Row};
use time::OffsetDateTime;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The reconciler's page (`workers/reconciler.rs` BATCH).
const RECONCILER_PAGE: u32 = 200;
/// The orphan sweep's page (`workers/sweep.rs` PAGE).
const SWEEP_PAGE: usize = 500;
/// The webhook worker's claim (`workers/webhooks.rs` BATCH).
const OUTBOX_CLAIM: u32 = 8;
/// A media worker pool with two free slots.
const PROCESSING_CLAIM: u32 = 2;

/// Queue rows added at each size (see the module header).
const Q_PENDING_EXPIRED: u64 = 400;
const Q_PENDING_LIVE: u64 = 200;
const Q_PROCESSING: u64 = 20;
const Q_UNATTACHED: u64 = 400;
const Q_UNDELIVERED: u64 = 100;
const QUEUE_ROWS: u64 =
    Q_PENDING_EXPIRED + Q_PENDING_LIVE + Q_PROCESSING + Q_UNATTACHED + Q_UNDELIVERED;

/// Rows per INSERT statement and statements per transaction while filling.
const ROWS_PER_INSERT: usize = 2000;
const INSERTS_PER_TX: usize = 25;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

struct Config {
    sizes: Vec<u64>,
    backends: Vec<Backend>,
    ops: usize,
    passes: usize,
    users: u64,
    server: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env(bench: bool) -> Self {
        let server =
            std::env::var("LATCHKEY_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER.into());
        if !bench {
            return Config {
                sizes: vec![3000],
                backends: vec![Backend::Sqlite],
                ops: 20,
                passes: 2,
                users: 5,
                server,
            };
        }
        let sizes: Vec<u64> = std::env::var("LEDGER_BENCH_SIZES")
            .unwrap_or_else(|_| "10000,100000,1000000".into())
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .expect("LEDGER_BENCH_SIZES: numbers")
            })
            .collect();
        assert!(
            sizes.windows(2).all(|w| w[0] < w[1]),
            "LEDGER_BENCH_SIZES must ascend: the table only grows"
        );
        let backends = std::env::var("LEDGER_BENCH_BACKENDS")
            .unwrap_or_else(|_| "sqlite,postgres".into())
            .split(',')
            .map(|s| match s.trim() {
                "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                other => panic!("LEDGER_BENCH_BACKENDS: unknown backend {other:?}"),
            })
            .collect();
        Config {
            sizes,
            backends,
            ops: env_or("LEDGER_BENCH_OPS", 2000usize).max(10),
            passes: env_or("LEDGER_BENCH_PASSES", 50usize).max(1),
            users: env_or("LEDGER_BENCH_USERS", 20u64).max(1),
            server,
        }
    }
}

/// A side connection for filling, settling, sizes and plans.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Raw {
    async fn exec(&mut self, sql: &str) {
        let done = match self {
            Raw::Sqlite(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(|_| ()),
            Raw::Pg(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(|_| ()),
        };
        if let Err(e) = done {
            panic!("{e}: {}", &sql[..sql.len().min(300)]);
        }
    }

    async fn int(&mut self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
            Raw::Pg(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
        }
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
    }

    async fn text(&mut self, sql: &str) -> String {
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
            Raw::Pg(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
        }
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
    }

    /// The plan lines of `sql` (which must start with EXPLAIN).
    async fn plan(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(c) => {
                let rows = sqlx::raw_sql(sql)
                    .fetch_all(&mut *c)
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {sql}"));
                rows.iter().map(|r| r.get::<String, _>("detail")).collect()
            }
            Raw::Pg(c) => {
                let rows = sqlx::raw_sql(sql)
                    .fetch_all(&mut *c)
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {sql}"));
                rows.iter().map(|r| r.get::<String, _>(0)).collect()
            }
        }
    }
}

/// splitmix64: a fixed, seedless spread of row numbers over the mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Time-ordered like the broker's UUIDv7 ids: creation milliseconds first,
/// then the row number (unique).
fn row_id(created_ms: i64, n: u64) -> String {
    format!("{created_ms:012x}{n:020x}")
}

fn user_of(n: u64, users: u64) -> String {
    format!("user-{:03}", mix(n ^ 0x5555) % users)
}

fn key_of(user: &str, profile: &str, id: &str) -> String {
    format!("u/{user}/{profile}/{id}.jpg")
}

/// One row to write while filling.
struct FillRow {
    n: u64,
    id: String,
    user: String,
    profile: &'static str,
    status: &'static str,
    attached: bool,
    reason: Option<&'static str>,
    created: i64,
    expires: i64,
    updated: i64,
    committed: Option<i64>,
    /// The webhook event: (delivered, dead) or none.
    event: Option<(bool, bool)>,
}

impl FillRow {
    fn key(&self) -> String {
        key_of(&self.user, self.profile, &self.id)
    }

    fn values(&self) -> String {
        let n = self.n;
        let q = |s: Option<String>| s.map_or("NULL".to_owned(), |s| format!("'{s}'"));
        let with_extras = mix(n ^ 0xabc).is_multiple_of(2);
        let sha = with_extras.then(|| {
            format!(
                "{:016x}{:016x}{:016x}{:016x}",
                mix(n),
                mix(n + 1),
                mix(n + 2),
                mix(n + 3)
            )
        });
        let idem = with_extras.then(|| format!("idem-{n}"));
        let etag = self.committed.map(|_| format!("\"{:016x}\"", mix(n ^ 7)));
        format!(
            "('{id}','{user}','{profile}','put','{key}','photo.jpg','image/jpeg',{size},{sha},\
             '{status}',{etag},{reason},'{{}}',{idem},{attached},{created},{expires},{updated},{committed})",
            id = self.id,
            user = self.user,
            profile = self.profile,
            key = self.key(),
            size = 50_000 + mix(n ^ 3) % 5_000_000,
            sha = q(sha),
            status = self.status,
            etag = q(etag),
            reason = q(self.reason.map(str::to_owned)),
            idem = q(idem),
            attached = q(self.attached.then(|| format!("post:{n}"))),
            created = self.created,
            expires = self.expires,
            updated = self.updated,
            committed = self.committed.map_or("NULL".to_owned(), |c| c.to_string()),
        )
    }

    fn event_values(&self) -> Option<String> {
        let (delivered, dead) = self.event?;
        let event_type = format!("upload.{}", self.status);
        // About the size of `event_payload`'s JSON.
        let payload = format!(
            "{{\"id\":\"{id}\",\"user_id\":\"{user}\",\"profile\":\"{profile}\",\
             \"key\":\"{key}\",\"status\":\"{status}\",\"size\":{size},\
             \"content_type\":\"image/jpeg\",\"etag\":null,\"created_at\":{created},\
             \"committed_at\":{committed},\"expires_at\":{expires}}}",
            id = self.id,
            user = self.user,
            profile = self.profile,
            key = self.key(),
            status = self.status,
            size = 50_000 + mix(self.n ^ 3) % 5_000_000,
            created = self.created,
            committed = self.committed.unwrap_or(0),
            expires = self.expires,
        );
        let at = self.updated;
        let (delivered_at, attempts, dead_at, last_error) = match (delivered, dead) {
            (true, _) => ((at + 1000).to_string(), 0, "NULL".to_owned(), "NULL"),
            (false, true) => (
                "NULL".to_owned(),
                20,
                (at + 3 * DAY).to_string(),
                "'HTTP 500 from the receiver'",
            ),
            (false, false) => ("NULL".to_owned(), 0, "NULL".to_owned(), "NULL"),
        };
        Some(format!(
            "('{id}','{event_type}','{payload}',{at},{delivered_at},{attempts},{at},{last_error},{dead_at})",
            id = self.id,
        ))
    }
}

const FILL_UPLOAD_COLUMNS: &str = "id, user_id, profile, mode, key, filename, content_type, \
     size, sha256, status, etag, reason, metadata, idempotency_key, attached_ref, created_at, \
     expires_at, updated_at, committed_at";
const FILL_OUTBOX_COLUMNS: &str = "upload_id, event_type, payload, created_at, delivered_at, \
     attempts, next_attempt_at, last_error, dead_at";

/// Generates the rows of the mix and writes them.
struct Filler {
    now: i64,
    /// Milliseconds between two history rows.
    step: i64,
    users: u64,
    /// Row numbers handed out so far.
    next: u64,
    /// Every key written, for the sweep's lookups.
    keys: Vec<String>,
}

impl Filler {
    fn new(now: i64, max_size: u64, users: u64) -> Self {
        Filler {
            now,
            step: (30 * DAY / max_size.max(1) as i64).max(1),
            users,
            next: 0,
            keys: Vec::new(),
        }
    }

    fn take(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn history(&mut self) -> FillRow {
        let n = self.take();
        let created = self.now - 31 * DAY + n as i64 * self.step;
        let user = user_of(n, self.users);
        let profile = if mix(n ^ 0x1234) % 10 < 7 {
            "photo"
        } else {
            "doc"
        };
        let pick = mix(n) % 1000;
        let (status, reason) = match pick {
            0..870 => ("committed", None),
            870..930 => ("expired", None),
            930..970 => (
                "deleted",
                mix(n ^ 9).is_multiple_of(2).then_some("unattached"),
            ),
            970..990 => ("rejected", Some("size_mismatch")),
            _ => ("aborted", None),
        };
        let committed = matches!(status, "committed" | "deleted").then_some(created + 3000);
        let attached = status == "committed" && (profile == "photo" || mix(n ^ 0x77) % 10 < 3);
        let dead = mix(n ^ 0xdead).is_multiple_of(1000);
        FillRow {
            id: row_id(created, n),
            n,
            user,
            profile,
            status,
            attached,
            reason,
            created,
            expires: created + 15 * MINUTE,
            updated: created + 4000,
            committed,
            event: Some((!dead, dead)),
        }
    }

    /// One queue row of `kind`, number `j` of its kind.
    fn queue(&mut self, kind: &'static str, j: u64) -> FillRow {
        let n = self.take();
        let now = self.now;
        let j = j as i64;
        let user = user_of(n, self.users);
        let base = |created: i64, profile, status| FillRow {
            id: row_id(created, n),
            n,
            user: user.clone(),
            profile,
            status,
            attached: false,
            reason: None,
            created,
            expires: created + 15 * MINUTE,
            updated: created,
            committed: None,
            event: None,
        };
        match kind {
            // Expired 30 to 45 minutes ago: well past the 1 min grace.
            "pending_expired" => base(now - 60 * MINUTE + j * 2000, "photo", "pending"),
            "pending_live" => {
                let mut r = base(now - 5 * MINUTE + j * 1000, "photo", "pending");
                r.expires = now + 10 * MINUTE;
                r
            }
            "processing" => {
                let mut r = base(now - 2 * MINUTE + j * 1000, "photo", "processing");
                r.updated = r.created + 3000;
                r
            }
            // Committed 26 h ago, unattached: past a 24 h unattached_ttl.
            "unattached" => {
                let mut r = base(now - 26 * HOUR + j * 1000, "photo", "committed");
                r.committed = Some(r.created + 3000);
                r.updated = r.created + 3000;
                r.event = Some((true, false));
                r
            }
            // Committed and attached a few minutes ago; the receiver has not
            // taken the event yet.
            "undelivered" => {
                let mut r = base(now - 10 * MINUTE + j * 1000, "photo", "committed");
                r.committed = Some(r.created + 3000);
                r.updated = r.created + 3000;
                r.attached = true;
                r.event = Some((false, false));
                r
            }
            other => unreachable!("queue kind {other}"),
        }
    }

    async fn write(&mut self, raw: &mut Raw, rows: &[FillRow]) {
        let mut uploads = format!("INSERT INTO uploads ({FILL_UPLOAD_COLUMNS}) VALUES ");
        let mut outbox = format!("INSERT INTO outbox ({FILL_OUTBOX_COLUMNS}) VALUES ");
        let (u0, o0) = (uploads.len(), outbox.len());
        for r in rows {
            if uploads.len() > u0 {
                uploads.push(',');
            }
            uploads.push_str(&r.values());
            if let Some(e) = r.event_values() {
                if outbox.len() > o0 {
                    outbox.push(',');
                }
                outbox.push_str(&e);
            }
            self.keys.push(r.key());
        }
        raw.exec(&uploads).await;
        if outbox.len() > o0 {
            raw.exec(&outbox).await;
        }
    }

    /// Settles the previous queues (what the workers would have done), then
    /// grows `uploads` to `target` rows: history first, then fresh queues.
    async fn grow(&mut self, raw: &mut Raw, target: u64) {
        let now = self.now;
        raw.exec(&format!(
            "UPDATE uploads SET status = 'expired', updated_at = {now} WHERE status = 'pending'; \
             UPDATE uploads SET status = 'committed', committed_at = {now}, \
                 process_lease_until = NULL WHERE status = 'processing'; \
             UPDATE uploads SET status = 'deleted', reason = 'unattached', updated_at = {now} \
                 WHERE profile = 'photo' AND status = 'committed' AND attached_ref IS NULL; \
             UPDATE outbox SET delivered_at = {now}, lease_until = NULL \
                 WHERE delivered_at IS NULL AND dead_at IS NULL"
        ))
        .await;
        let have = raw.int("SELECT COUNT(*) FROM uploads").await as u64;
        let history = target.saturating_sub(have + QUEUE_ROWS);
        let mut left = history;
        raw.exec("BEGIN").await;
        let mut statements = 0;
        while left > 0 {
            let n = left.min(ROWS_PER_INSERT as u64);
            let rows: Vec<FillRow> = (0..n).map(|_| self.history()).collect();
            self.write(raw, &rows).await;
            left -= n;
            statements += 1;
            if statements % INSERTS_PER_TX == 0 {
                raw.exec("COMMIT; BEGIN").await;
            }
        }
        let mut queue = Vec::new();
        for (kind, count) in [
            ("unattached", Q_UNATTACHED),
            ("pending_expired", Q_PENDING_EXPIRED),
            ("undelivered", Q_UNDELIVERED),
            ("processing", Q_PROCESSING),
            ("pending_live", Q_PENDING_LIVE),
        ] {
            for j in 0..count {
                queue.push(self.queue(kind, j));
            }
        }
        for chunk in queue.chunks(ROWS_PER_INSERT) {
            self.write(raw, chunk).await;
        }
        raw.exec("COMMIT").await;
    }
}

/// Latency statistics over a run of timed operations.
struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty());
        samples.sort();
        let pct = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len());
            samples[i - 1]
        };
        Stats {
            mean: samples.iter().sum::<Duration>() / samples.len() as u32,
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The ledger calls of one reconciler pass, by name, in order.
const PASS_PARTS: [&str; 7] = [
    "try_lease",
    "expired",
    "unattached",
    "claim_processing",
    "outbox_claim",
    "find_by_key ×500",
    "release_lease",
];

/// What one size measured.
struct Measured {
    rows: u64,
    outbox_rows: u64,
    db_mib: f64,
    fill: Duration,
    create: Stats,
    create_quota: Stats,
    complete: Stats,
    pass: Stats,
    /// Rows returned plus keys looked up, per pass.
    pass_rows: u64,
    /// Mean per part of the pass, in [`PASS_PARTS`] order.
    parts: Vec<Duration>,
    /// Hot queries whose plan scans a whole table.
    scans: Vec<String>,
}

fn pending_upload(user: &str, profile: &str, idempotency: String) -> Upload {
    let id = UploadId::new();
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap();
    let user_id = UserId::parse(user).unwrap();
    Upload {
        id,
        key: ObjectKey::from_trusted(key_of(user, profile, &id.to_string())),
        user_id,
        profile: ProfileName::parse(profile).unwrap(),
        mode: Mode::Put,
        filename: "photo.jpg".into(),
        content_type: ContentType::parse("image/jpeg").unwrap(),
        size: 1_234_567,
        sha256: None,
        status: UploadStatus::Pending,
        etag: None,
        reason: None,
        metadata: Default::default(),
        idempotency_key: Some(idempotency),
        attached_ref: None,
        created_at: now,
        expires_at: now + time::Duration::minutes(15),
        updated_at: now,
        committed_at: None,
        store_upload_id: None,
        media: None,
    }
}

async fn time_it<T, F: std::future::Future<Output = T>>(samples: &mut Vec<Duration>, f: F) -> T {
    let t = Instant::now();
    let out = f.await;
    samples.push(t.elapsed());
    out
}

async fn measure_ops(
    ledger: &Arc<dyn UploadRepo>,
    cfg: &Config,
    size: u64,
) -> (Stats, Stats, Stats) {
    let user = "user-000";
    let quota = Quota {
        max_bytes: Some(u64::MAX / 4),
        max_count: Some(u64::MAX / 4),
    };
    let (mut create, mut create_quota, mut complete) = (Vec::new(), Vec::new(), Vec::new());
    let mut made = Vec::with_capacity(cfg.ops);
    // A few unrecorded calls first, so the first timed one does not pay
    // for connecting or preparing statements.
    let warm = 10;
    for i in 0..cfg.ops + warm {
        let u = pending_upload(user, "photo", format!("bench-{size}-{i}"));
        let mut samples = Vec::new();
        let row = time_it(&mut samples, ledger.insert(&u, None))
            .await
            .unwrap();
        assert!(row.is_new());
        if i >= warm {
            create.extend(samples);
        }
        made.push(u.id);
    }
    for i in 0..cfg.ops + warm {
        let u = pending_upload(user, "photo", format!("bench-q-{size}-{i}"));
        let mut samples = Vec::new();
        let row = time_it(&mut samples, ledger.insert(&u, Some(&quota)))
            .await
            .unwrap();
        assert!(row.is_new());
        if i >= warm {
            create_quota.extend(samples);
        }
    }
    for (i, id) in made.into_iter().enumerate() {
        let changes = Changes {
            etag: Some(format!("\"{i:032x}\"")),
            ..Changes::default()
        };
        let mut samples = Vec::new();
        let done = time_it(
            &mut samples,
            ledger.transition(
                id,
                UploadStatus::Pending,
                UploadStatus::Committed,
                &changes,
                OffsetDateTime::now_utc(),
            ),
        )
        .await
        .unwrap();
        assert!(done.is_some(), "the commit must win: nobody else races");
        if i >= warm {
            complete.extend(samples);
        }
    }
    (
        Stats::of(&mut create),
        Stats::of(&mut create_quota),
        Stats::of(&mut complete),
    )
}

async fn measure_passes(
    ledger: &Arc<dyn UploadRepo>,
    cfg: &Config,
    keys: &[String],
) -> (Stats, u64, Vec<Duration>) {
    let photo = ProfileName::parse("photo").unwrap();
    let mut totals = Vec::new();
    let mut parts = vec![Duration::ZERO; PASS_PARTS.len()];
    let mut rows_seen = 0u64;
    for p in 0..cfg.passes {
        let now = OffsetDateTime::now_utc();
        let lookups: Vec<ObjectKey> = (0..SWEEP_PAGE)
            .map(|i| {
                let k = mix((p * SWEEP_PAGE + i) as u64 ^ 0xfeed) as usize % keys.len();
                ObjectKey::from_trusted(keys[k].clone())
            })
            .collect();
        let mut t = Vec::new();
        let start = Instant::now();
        let won = time_it(
            &mut t,
            ledger.try_lease("reconciler", "bench", now, Duration::from_secs(30)),
        )
        .await
        .unwrap();
        assert!(won);
        let expired = time_it(
            &mut t,
            ledger.expired(
                UploadStatus::Pending,
                now - time::Duration::minutes(1),
                RECONCILER_PAGE,
            ),
        )
        .await
        .unwrap();
        let unattached = time_it(
            &mut t,
            ledger.committed_unattached(&photo, now - time::Duration::hours(24), RECONCILER_PAGE),
        )
        .await
        .unwrap();
        let jobs = time_it(
            &mut t,
            ledger.claim_processing(now, Duration::ZERO, PROCESSING_CLAIM),
        )
        .await
        .unwrap();
        let events = time_it(
            &mut t,
            ledger.outbox_claim(now, Duration::ZERO, OUTBOX_CLAIM),
        )
        .await
        .unwrap();
        let mut found = 0;
        let t0 = Instant::now();
        for k in &lookups {
            found += usize::from(ledger.find_by_key(k).await.unwrap().is_some());
        }
        t.push(t0.elapsed());
        time_it(&mut t, ledger.release_lease("reconciler", "bench"))
            .await
            .unwrap();
        totals.push(start.elapsed());
        // Every page is full: the queues are larger than the pages.
        assert_eq!(expired.len(), RECONCILER_PAGE as usize, "expired page");
        assert_eq!(
            unattached.len(),
            RECONCILER_PAGE as usize,
            "unattached page"
        );
        assert_eq!(jobs.len(), PROCESSING_CLAIM as usize, "processing claim");
        assert_eq!(events.len(), OUTBOX_CLAIM as usize, "outbox claim");
        assert_eq!(found, SWEEP_PAGE, "every looked-up key exists");
        rows_seen = (expired.len() + unattached.len() + jobs.len() + events.len() + found) as u64;
        for (sum, d) in parts.iter_mut().zip(t) {
            *sum += d;
        }
    }
    let parts = parts.into_iter().map(|d| d / cfg.passes as u32).collect();
    (Stats::of(&mut totals), rows_seen, parts)
}

/// A hot query: its name, its SQL on each backend, and for PostgreSQL the
/// values to plan it with.
struct Hot {
    name: &'static str,
    sqlite: String,
    pg: String,
    args: Vec<String>,
}

const UPLOAD_COLUMNS: &str = "id, user_id, profile, mode, key, filename, \
     content_type, size, sha256, status, etag, reason, metadata, idempotency_key, \
     attached_ref, created_at, expires_at, updated_at, committed_at, store_upload_id, \
     width, height, thumbhash, variants";
const OUTBOX_COLUMNS: &str = "id, upload_id, event_type, payload, created_at, \
     attempts, next_attempt_at, last_error, dead_at";

/// The statements the measured calls run, as `src/sqlite` and
/// `src/postgres` write them.
fn hot_queries(now: i64, key: &str) -> Vec<Hot> {
    let s = |x: &str| format!("'{x}'");
    let up = |rest: &str| format!("SELECT {UPLOAD_COLUMNS} FROM uploads {rest}");
    vec![
        Hot {
            name: "insert: idempotency lookup",
            sqlite: up("WHERE user_id = ? AND idempotency_key = ?"),
            pg: up("WHERE user_id = $1 AND idempotency_key = $2"),
            args: vec![s("user-000"), s("idem-1")],
        },
        Hot {
            name: "insert: quota usage",
            sqlite: "SELECT bytes, count FROM usage WHERE user_id = ? AND profile = ?".into(),
            pg: "SELECT bytes, count FROM usage WHERE user_id = $1 AND profile = $2".into(),
            args: vec![s("user-000"), s("photo")],
        },
        Hot {
            name: "get / read back",
            sqlite: up("WHERE id = ?"),
            pg: up("WHERE id = $1"),
            args: vec![s("0")],
        },
        Hot {
            name: "transition (compare-and-set)",
            sqlite: "UPDATE uploads SET status = ?, etag = COALESCE(?, etag), updated_at = ? \
                     WHERE id = ? AND status = ?"
                .into(),
            pg: "UPDATE uploads SET status = $1, etag = COALESCE($2, etag), updated_at = $3 \
                 WHERE id = $4 AND status = $5"
                .into(),
            args: vec![
                s("committed"),
                s("e"),
                now.to_string(),
                s("0"),
                s("pending"),
            ],
        },
        Hot {
            name: "find_by_key",
            sqlite: up("WHERE key = ?"),
            pg: up("WHERE key = $1"),
            args: vec![s(key)],
        },
        Hot {
            name: "expired (reconciler)",
            sqlite: up("WHERE status = ? AND expires_at < ? ORDER BY expires_at, id LIMIT ?"),
            pg: up("WHERE status = $1 AND expires_at < $2 ORDER BY expires_at, id LIMIT $3"),
            args: vec![s("pending"), (now - MINUTE).to_string(), "200".into()],
        },
        Hot {
            name: "committed_unattached (sweep)",
            sqlite: up(
                "WHERE profile = ? AND status = 'committed' AND attached_ref IS NULL \
                 AND committed_at < ? ORDER BY committed_at, id LIMIT ?",
            ),
            pg: up(
                "WHERE profile = $1 AND status = 'committed' AND attached_ref IS NULL \
                 AND committed_at < $2 ORDER BY committed_at, id LIMIT $3",
            ),
            args: vec![s("photo"), (now - DAY).to_string(), "200".into()],
        },
        Hot {
            name: "claim_processing",
            sqlite: format!(
                "UPDATE uploads SET process_lease_until = ?, \
                     process_attempts = process_attempts + 1 \
                 WHERE id IN ( \
                     SELECT id FROM uploads \
                     WHERE status = 'processing' \
                       AND (process_lease_until IS NULL OR process_lease_until <= ?) \
                     ORDER BY updated_at, id LIMIT ?) \
                 RETURNING {UPLOAD_COLUMNS}, process_attempts"
            ),
            pg: format!(
                "UPDATE uploads SET process_lease_until = $1, \
                     process_attempts = process_attempts + 1 \
                 WHERE id IN ( \
                     SELECT id FROM uploads \
                     WHERE status = 'processing' \
                       AND (process_lease_until IS NULL OR process_lease_until <= $2) \
                     ORDER BY updated_at, id LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) \
                 RETURNING {UPLOAD_COLUMNS}, process_attempts"
            ),
            args: vec![now.to_string(), now.to_string(), "2".into()],
        },
        Hot {
            name: "outbox_claim",
            sqlite: format!(
                "UPDATE outbox SET lease_until = ? WHERE id IN ( \
                     SELECT id FROM outbox \
                     WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
                       AND (lease_until IS NULL OR lease_until <= ?) \
                     ORDER BY id LIMIT ?) \
                 RETURNING {OUTBOX_COLUMNS}"
            ),
            pg: format!(
                "UPDATE outbox SET lease_until = $1 WHERE id IN ( \
                     SELECT id FROM outbox \
                     WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2 \
                       AND (lease_until IS NULL OR lease_until <= $3) \
                     ORDER BY id LIMIT $4 \
                     FOR UPDATE SKIP LOCKED) \
                 RETURNING {OUTBOX_COLUMNS}"
            ),
            args: vec![
                now.to_string(),
                now.to_string(),
                now.to_string(),
                "8".into(),
            ],
        },
        Hot {
            name: "outbox_pending",
            sqlite: format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox \
                 WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?"
            ),
            pg: format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox \
                 WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1"
            ),
            args: vec!["50".into()],
        },
        Hot {
            name: "outbox_dead",
            sqlite: format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox \
                 WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY id LIMIT ?"
            ),
            pg: format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox \
                 WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY id LIMIT $1"
            ),
            args: vec!["50".into()],
        },
        Hot {
            name: "list (a user's uploads)",
            sqlite: up("WHERE user_id = ? ORDER BY id DESC LIMIT ?"),
            pg: up("WHERE user_id = $1 ORDER BY id DESC LIMIT $2"),
            args: vec![s("user-000"), "50".into()],
        },
    ]
}

/// `sql` with `$1`.. replaced by `args` (highest first, so `$1` does not
/// eat the start of `$10`).
fn inline(sql: &str, args: &[String]) -> String {
    let mut out = sql.to_owned();
    for (i, a) in args.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), a);
    }
    out
}

/// Whether a plan reads a whole table, or walks the whole of an index that
/// holds every row (a walk of a partial index — only the rows of a queue —
/// is what those indexes are for, and is not flagged).
fn scans(backend: Backend, lines: &[String], partial: &[String]) -> bool {
    let full_index = |name: &str| !partial.iter().any(|p| p == name);
    match backend {
        // `SCAN t` is a full table scan, `SCAN t USING [COVERING] INDEX i`
        // a full walk of i; `SEARCH` is a range or point lookup.
        Backend::Sqlite => lines.iter().any(|l| {
            let l = l.trim_start();
            if !l.starts_with("SCAN ") {
                return false;
            }
            match l.split_once(" INDEX ") {
                Some((_, rest)) => full_index(rest.split_whitespace().next().unwrap_or("")),
                None => true,
            }
        }),
        // `Seq Scan` reads the table; an index scan with no `Index Cond`
        // walks the whole index.
        Backend::Postgres => lines.iter().enumerate().any(|(i, l)| {
            if l.contains("Seq Scan") {
                return true;
            }
            // "Index Scan using i", "Index Scan Backward using i", ...
            if !l.contains("Scan") {
                return false;
            }
            let Some((_, rest)) = l.split_once(" using ") else {
                return false;
            };
            let name = rest.split_whitespace().next().unwrap_or("");
            let bounded = lines[i + 1..]
                .iter()
                .take_while(|n| !n.contains("->"))
                .any(|n| n.contains("Index Cond"));
            !bounded && full_index(name)
        }),
    }
}

/// Each hot query's plan(s); also returns the names of queries that scan.
async fn plans(raw: &mut Raw, backend: Backend, now: i64, key: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut flagged = Vec::new();
    let partial = match backend {
        Backend::Sqlite => {
            raw.text(
                "SELECT COALESCE(group_concat(name, ','), '') FROM sqlite_master \
                 WHERE type = 'index' AND sql LIKE '%WHERE%'",
            )
            .await
        }
        Backend::Postgres => {
            raw.text(
                "SELECT COALESCE(string_agg(indexname, ','), '') FROM pg_indexes \
                 WHERE schemaname = 'public' AND indexdef LIKE '%WHERE%'",
            )
            .await
        }
    };
    let partial: Vec<String> = partial.split(',').map(str::to_owned).collect();
    for q in hot_queries(now, key) {
        let mut variants = Vec::new();
        match backend {
            Backend::Sqlite => {
                variants.push((
                    "",
                    raw.plan(&format!("EXPLAIN QUERY PLAN {}", q.sqlite)).await,
                ));
            }
            Backend::Postgres => {
                let custom = raw
                    .plan(&format!("EXPLAIN {}", inline(&q.pg, &q.args)))
                    .await;
                raw.exec(&format!("PREPARE growth_q AS {}", q.pg)).await;
                raw.exec("SET plan_cache_mode = force_generic_plan").await;
                let generic = raw
                    .plan(&format!("EXPLAIN EXECUTE growth_q({})", q.args.join(", ")))
                    .await;
                raw.exec("RESET plan_cache_mode; DEALLOCATE growth_q").await;
                variants.push(("custom plan", custom));
                variants.push(("generic plan", generic));
            }
        }
        for (label, lines) in variants {
            let scanning = scans(backend, &lines, &partial);
            if scanning {
                flagged.push(format!("{} {label}", q.name).trim_end().to_owned());
            }
            let flag = if scanning { "  ← SCAN" } else { "" };
            let label = if label.is_empty() {
                String::new()
            } else {
                format!(" ({label})")
            };
            out.push_str(&format!("-- {}{label}{flag}\n", q.name));
            for l in lines {
                out.push_str(&format!("   {l}\n"));
            }
        }
    }
    (out, flagged)
}

async fn db_mib(raw: &mut Raw, backend: Backend, sqlite_path: Option<&std::path::Path>) -> f64 {
    match backend {
        Backend::Sqlite => {
            let path = sqlite_path.expect("sqlite path");
            let mut bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let wal = path.with_extension("db-wal");
            bytes += std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
            bytes as f64 / 1048576.0
        }
        Backend::Postgres => {
            raw.int("SELECT pg_database_size(current_database())").await as f64 / 1048576.0
        }
    }
}

/// Fills and measures one backend at every size.
async fn run_backend(
    cfg: Arc<Config>,
    backend: Backend,
    url: String,
    sqlite_path: Option<std::path::PathBuf>,
) -> (Vec<Measured>, String, String) {
    // The ledger exactly as `latchkey serve` opens it (migrations included).
    let ledger = latchkey_ledger::connect_with(&url, OpenOptions::default())
        .await
        .expect("open the ledger");
    let (mut raw, version) = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            // Only this side connection: filling need not be durable.
            sqlx::raw_sql("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144")
                .execute(&mut c)
                .await
                .unwrap();
            let mut raw = Raw::Sqlite(c);
            let v = raw.text("SELECT sqlite_version()").await;
            (raw, format!("SQLite {v}"))
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("SET synchronous_commit = off")
                .execute(&mut c)
                .await
                .unwrap();
            let mut raw = Raw::Pg(c);
            let v = raw.text("SHOW server_version").await;
            (raw, format!("PostgreSQL {v}"))
        }
    };
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now = now as i64;
    let max = *cfg.sizes.last().unwrap();
    let mut filler = Filler::new(now, max, cfg.users);
    let mut results = Vec::new();
    let mut last_plans = String::new();
    for &size in &cfg.sizes {
        let t = Instant::now();
        filler.grow(&mut raw, size).await;
        if backend == Backend::Postgres {
            // What autovacuum does after a bulk load, done now rather than
            // whenever it gets round to it, so plans see real statistics.
            // One statement each: VACUUM refuses to run in the implicit
            // transaction of a multi-statement query.
            raw.exec("VACUUM ANALYZE uploads").await;
            raw.exec("VACUUM ANALYZE outbox").await;
        }
        let fill = t.elapsed();
        let rows = raw.int("SELECT COUNT(*) FROM uploads").await as u64;
        let outbox_rows = raw.int("SELECT COUNT(*) FROM outbox").await as u64;
        eprintln!(
            "{}: {rows} rows ({outbox_rows} events) after {:.1} s of filling",
            backend.name(),
            fill.as_secs_f64()
        );
        let (plan_text, scans) = plans(&mut raw, backend, now, &filler.keys[0]).await;
        last_plans = plan_text;
        let (create, create_quota, complete) = measure_ops(&ledger, &cfg, size).await;
        let (pass, pass_rows, parts) = measure_passes(&ledger, &cfg, &filler.keys).await;
        let db_mib = db_mib(&mut raw, backend, sqlite_path.as_deref()).await;
        results.push(Measured {
            rows,
            outbox_rows,
            db_mib,
            fill,
            create,
            create_quota,
            complete,
            pass,
            pass_rows,
            parts,
            scans,
        });
        eprintln!("{}: measured at {rows} rows", backend.name());
    }
    ledger.close().await;
    (results, version, last_plans)
}

fn report(backend: Backend, version: &str, results: &[Measured], plans: &str, cfg: &Config) {
    println!("\n### {} ({version})\n", backend.name());
    println!(
        "{} timed ops per size, {} passes, {} users; one client, sequential.\n",
        cfg.ops, cfg.passes, cfg.users
    );
    println!(
        "| rows | events | DB MiB | create p50 / p99 ms | create+quota p50 / p99 ms | \
         complete p50 / p99 ms | pass mean / p99 ms | rows/pass | µs/row |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in results {
        println!(
            "| {} | {} | {:.0} | {} / {} | {} / {} | {} / {} | {} / {} | {} | {:.1} |",
            m.rows,
            m.outbox_rows,
            m.db_mib,
            ms(m.create.p50),
            ms(m.create.p99),
            ms(m.create_quota.p50),
            ms(m.create_quota.p99),
            ms(m.complete.p50),
            ms(m.complete.p99),
            ms(m.pass.mean),
            ms(m.pass.p99),
            m.pass_rows,
            m.pass.mean.as_secs_f64() * 1e6 / m.pass_rows as f64,
        );
    }
    println!(
        "\nMeans per op (ms): create {} ; create+quota {} ; complete {}",
        results
            .iter()
            .map(|m| ms(m.create.mean))
            .collect::<Vec<_>>()
            .join(" / "),
        results
            .iter()
            .map(|m| ms(m.create_quota.mean))
            .collect::<Vec<_>>()
            .join(" / "),
        results
            .iter()
            .map(|m| ms(m.complete.mean))
            .collect::<Vec<_>>()
            .join(" / "),
    );
    println!("\nOne pass, mean ms per ledger call:\n");
    println!("| rows | {} |", PASS_PARTS.join(" | "));
    println!("|---|{}", "---|".repeat(PASS_PARTS.len()));
    for m in results {
        let parts: Vec<String> = m.parts.iter().map(|d| ms(*d)).collect();
        println!("| {} | {} |", m.rows, parts.join(" | "));
    }
    println!(
        "\nFill time (not measured, for the record): {}",
        results
            .iter()
            .map(|m| format!("{} rows {:.0} s", m.rows, m.fill.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let scans: Vec<String> = results
        .iter()
        .flat_map(|m| {
            m.scans
                .iter()
                .map(move |s| format!("{s} at {} rows", m.rows))
        })
        .collect();
    if scans.is_empty() {
        println!("\nPlans: no hot query scans a table, at any size.");
    } else {
        println!("\nPlans that SCAN: {}", scans.join("; "));
    }
    println!(
        "\nPlans at {} rows:\n\n```\n{plans}```",
        results.last().map_or(0, |m| m.rows)
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    format!(
        "date: {date}\nnproc: {nproc}\ncpu: {cpu}\nmemory: {mem}\nload: {}\ncommit: {commit}{}",
        load.join(" "),
        if dirty { " (dirty)" } else { "" }
    )
}

async fn create_pg_database(server: &str) -> (sqlx::PgConnection, String, String) {
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL at LATCHKEY_TEST_DATABASE_URL or {DEFAULT_SERVER}: {e}")
        });
    let name = format!("latchkey_bench_{}", UploadId::new());
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    (admin, name.clone(), format!("{base}/{name}{query}"))
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let cfg = Arc::new(Config::from_env(bench));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("## Ledger growth\n\n```\n{}\n```", machine());
    println!(
        "sizes: {:?}; backends: {:?}",
        cfg.sizes,
        cfg.backends.iter().map(|b| b.name()).collect::<Vec<_>>()
    );
    for &backend in &cfg.backends {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("ledger.db");
                let url = format!("sqlite://{}", path.display());
                let (results, version, plans) =
                    rt.block_on(run_backend(cfg.clone(), backend, url, Some(path)));
                let version = format!("{version}, WAL, synchronous=FULL");
                report(backend, &version, &results, &plans, &cfg);
            }
            Backend::Postgres => {
                let (mut admin, name, url) = rt.block_on(create_pg_database(&cfg.server));
                // Caught, so a failure still reaches the DROP.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rt.block_on(run_backend(cfg.clone(), backend, url, None))
                }));
                let drop_sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                if let Err(e) = rt.block_on(sqlx::raw_sql(&drop_sql).execute(&mut admin)) {
                    eprintln!("could not drop {name}: {e}");
                }
                match outcome {
                    Ok((results, version, plans)) => {
                        report(backend, &version, &results, &plans, &cfg)
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
    }
}
