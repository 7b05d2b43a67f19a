// @tus/server with @tus/s3-store on latchkey's store, on 127.0.0.1: a peer
// for scripts/bench (not a test dependency). Parts of 5 MiB, like
// latchkey's tus endpoint, so both send the store the same multipart upload.
//
// Usage: node tus-server.mjs <port>
// with BENCH_S3_ENDPOINT, BENCH_S3_REGION, BENCH_S3_BUCKET,
// BENCH_S3_ACCESS_KEY, BENCH_S3_SECRET_KEY. Prints `listening on: URL` (the creation
// endpoint) once it listens.
import { S3Store } from "@tus/s3-store";
import { Server } from "@tus/server";

const [port] = process.argv.slice(2);
const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`tus-server.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
if (!port) {
  console.error("usage: node tus-server.mjs <port>");
  process.exit(2);
}

const datastore = new S3Store({
  partSize: 5 * 1024 * 1024,
  s3ClientConfig: {
    bucket: env("BENCH_S3_BUCKET"),
    endpoint: env("BENCH_S3_ENDPOINT"),
    region: env("BENCH_S3_REGION"),
    forcePathStyle: true,
    credentials: {
      accessKeyId: env("BENCH_S3_ACCESS_KEY"),
      secretAccessKey: env("BENCH_S3_SECRET_KEY"),
    },
  },
});
const tus = new Server({ path: "/files", datastore });
const server = tus.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on: http://127.0.0.1:${server.address().port}/files`);
});
