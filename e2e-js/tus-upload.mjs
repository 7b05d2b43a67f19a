// tus-js-client, unmodified, against latchkey's /tus/ endpoint: upload a
// file in chunks, abort the request once past ~40%, resume from the upload
// URL (a fresh Upload, as an app restarted would), and finish.
//
// Usage: node tus-upload.mjs <endpoint> <file> <profile> <content-type>
// with the bearer token in LATCHKEY_TOKEN. Prints one JSON line:
// {"url", "abortedAt", "resumedFrom", "size"}.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [endpoint, file, profile, filetype] = process.argv.slice(2);
const token = process.env.LATCHKEY_TOKEN;
if (!endpoint || !file || !profile || !filetype || !token) {
  console.error("usage: LATCHKEY_TOKEN=… node tus-upload.mjs <endpoint> <file> <profile> <content-type>");
  process.exit(2);
}
const data = readFileSync(file);
const common = {
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: 1024 * 1024,
  // 423 (another request still holds the upload) and 409 are retried.
  retryDelays: [0, 250, 500, 1000, 2000, 4000],
  metadata: { profile, filename: basename(file), filetype },
};

function fail(what, err) {
  console.error(`${what}: ${err?.stack ?? err}`);
  process.exit(1);
}

// First attempt: stopped by the client mid-way.
const first = await new Promise((resolve) => {
  let aborted = false;
  const upload = new tus.Upload(data, {
    ...common,
    endpoint,
    onProgress(sent, total) {
      if (!aborted && sent > total * 0.4) {
        aborted = true;
        upload.abort().then(() => resolve({ url: upload.url, abortedAt: sent }));
      }
    },
    onSuccess: () => fail("first attempt", "finished before it could be aborted"),
    onError: (e) => fail("first attempt", e),
  });
  upload.start();
});

// What the server kept, as any client would ask it.
const head = await fetch(first.url, {
  method: "HEAD",
  headers: { Authorization: `Bearer ${token}`, "Tus-Resumable": "1.0.0" },
});
const resumedFrom = Number(head.headers.get("upload-offset"));

// Second attempt: a new Upload resuming at the same URL.
await new Promise((resolve) => {
  const upload = new tus.Upload(data, {
    ...common,
    uploadUrl: first.url,
    onSuccess: resolve,
    onError: (e) => fail("resumed upload", e),
  });
  upload.start();
});

console.log(JSON.stringify({ url: first.url, abortedAt: first.abortedAt, resumedFrom, size: data.length }));
