// Uppy Companion, standalone (the `companion` binary's own app: express,
// morgan request log, express-session, helmet), bound to 127.0.0.1 instead
// of every interface, with its S3 options on latchkey's store. A peer for
// scripts/bench; not a test dependency.
//
// Usage: node companion.mjs <port> <datadir>
// with BENCH_S3_ENDPOINT, BENCH_S3_REGION, BENCH_S3_BUCKET,
// BENCH_S3_ACCESS_KEY, BENCH_S3_SECRET_KEY. Prints `listening on: URL` once
// it listens.
import standalone from "@uppy/companion/standalone";

const [port, datadir] = process.argv.slice(2);
const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`companion.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
if (!port || !datadir) {
  console.error("usage: node companion.mjs <port> <datadir>");
  process.exit(2);
}

const { app } = standalone({
  s3: {
    key: env("BENCH_S3_ACCESS_KEY"),
    secret: env("BENCH_S3_SECRET_KEY"),
    bucket: env("BENCH_S3_BUCKET"),
    endpoint: env("BENCH_S3_ENDPOINT"),
    region: env("BENCH_S3_REGION"),
    forcePathStyle: true,
    expires: 800,
  },
  server: { host: `127.0.0.1:${port}`, protocol: "http" },
  filePath: datadir,
  // Fixed so that no "auto-generating" warning muddies the log; Companion
  // only uses them for provider OAuth, which the bench does not touch.
  secret: "latchkey-bench-companion-secret",
  preAuthSecret: "latchkey-bench-companion-preauth",
  // Required in production mode; never called (no remote-URL uploads).
  uploadUrls: ["http://127.0.0.1:1/"],
  corsOrigins: true,
});
const server = app.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on: http://127.0.0.1:${server.address().port}`);
});
