// Browser tests, run by crates/latchkey-cli/tests/browser.rs against a real
// `latchkey serve` (embedded default, dev mode):
//  1. the demo page at `/` uploads a photo in each mode and shows it in the
//     gallery (screenshots go to $SCREENSHOT_DIR);
//  2. a tiny local page with the real @uppy/core + @uppy/aws-s3 (bundled
//     here with esbuild from node_modules) uploads a small and a >100 MiB
//     file in each of Uppy's three backend modes; each upload must end
//     committed in the ledger.
// Headless Debian Chromium via playwright-core. Exits non-zero on failure.

import { createServer } from 'node:http';
import { readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const BROKER = (process.env.LATCHKEY_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const SHOTS = process.env.SCREENSHOT_DIR || join(here, '..', 'target', 'screenshots');
const PHOTO = process.env.PHOTO || join(here, '..', '..', 'shared', 'testdata', 'iphone-12mp-gps-orient6.jpg');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ONLY = process.env.ONLY || 'demo,uppy';
const MIB = 1024 * 1024;

mkdirSync(SHOTS, { recursive: true });

function log(...a) { console.log('[browser]', ...a); }

async function devToken(user) {
  const res = await fetch(`${BROKER}/v1/dev/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }),
  });
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

async function listUploads(token) {
  const res = await fetch(`${BROKER}/v1/uploads?limit=100`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`list: HTTP ${res.status}`);
  return (await res.json()).items;
}

/** Waits until `pred(rows)` holds (bounded polling, not a timing assertion). */
async function waitFor(what, fn, tries = 240) {
  let last;
  for (let i = 0; i < tries; i++) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`gave up waiting for ${what}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const failures = [];
const consoleErrors = (page, tag) => page.on('console', (m) => { if (m.type() === 'error') log(`${tag} console:`, m.text()); });

// ---- 1. The demo page -------------------------------------------------------

async function demo() {
  const user = `demo-${Date.now().toString(36)}`;
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  consoleErrors(page, 'demo');
  await page.goto(`${BROKER}/`);
  await page.screenshot({ path: join(SHOTS, 'demo-1-signin.png'), fullPage: true });
  await page.fill('#dev-user', user);
  await page.click('#dev-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  const modes = ['put', 'post', 'multipart', 'tus'];
  for (const mode of modes) {
    await page.click(`#modes button[data-mode="${mode}"]`);
    await page.setInputFiles('#file-input', PHOTO);
    const item = page.locator(`#queue .qitem[data-mode="${mode}"]`).first();
    await item.waitFor();
    await waitFor(`the ${mode} upload to finish`, async () => {
      const cls = await item.getAttribute('class');
      if (cls.includes('failed')) throw new Error(`demo ${mode}: ${await item.locator('.qstate').textContent()}`);
      return cls.includes('done');
    });
    log(`demo: ${mode} uploaded`);
  }
  await page.screenshot({ path: join(SHOTS, 'demo-2-uploading.png'), fullPage: true });
  const token = await page.evaluate(() => localStorage.getItem('latchkey.token'));
  // Every upload committed (photos pass the pipeline first) …
  const rows = await waitFor('four committed uploads', async () => {
    const r = await listUploads(token);
    return r.length === 4 && r.every((u) => u.status === 'committed') ? r : null;
  });
  const byMode = rows.map((r) => r.mode).sort();
  if (JSON.stringify(byMode) !== JSON.stringify(['multipart', 'post', 'put', 'tus'])) {
    throw new Error(`demo: modes in the ledger: ${byMode}`);
  }
  // … and shown in the gallery as committed, with a loaded thumbnail.
  await waitFor('the gallery to show four committed thumbnails', async () => page.evaluate(() => {
    const tiles = [...document.querySelectorAll('#gallery .tile')];
    return tiles.length === 4 && tiles.every((t) => t.dataset.status === 'committed'
      && t.querySelector('img').complete && t.querySelector('img').naturalWidth > 0);
  }));
  await page.screenshot({ path: join(SHOTS, 'demo-3-gallery.png'), fullPage: true });
  await page.setViewportSize({ width: 420, height: 900 });
  await page.screenshot({ path: join(SHOTS, 'demo-4-narrow.png'), fullPage: true });
  await context.close();
  log('demo: all four modes committed and shown');
}

// ---- 2. Uppy, its three backend modes ----------------------------------------

async function bundleUppy() {
  const out = await esbuild.build({
    stdin: {
      contents: "import Uppy from '@uppy/core'; import AwsS3 from '@uppy/aws-s3'; window.Uppy = Uppy; window.AwsS3 = AwsS3;",
      resolveDir: here,
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    write: false,
    platform: 'browser',
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

// Runs in the page: one Uppy instance per mode, two files each.
async function uppyInPage({ mode, broker, token, sizes }) {
  const { Uppy, AwsS3 } = window;
  const auth = { authorization: `Bearer ${token}` };
  const json = async (res) => { if (!res.ok) throw new Error(`${res.url}: HTTP ${res.status} ${await res.text()}`); return res.json(); };
  const uppy = new Uppy({
    autoProceed: false,
    // Companion's client sends no size; latchkey reads it from the metadata.
    onBeforeFileAdded: (f) => ({ ...f, meta: { ...f.meta, size: f.size, profile: 'file' } }),
  });
  let opts;
  if (mode === 'companion') {
    const t = await json(await fetch(`${broker}/v1/uppy-token`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ profile: 'file' }),
    }));
    opts = { companionEndpoint: t.companion_url };
  } else if (mode === 'signRequest') {
    // The app creates each upload first (it knows the size), then Uppy
    // writes to the upload's key; latchkey signs each request.
    uppy.addPreProcessor(async (ids) => {
      for (const id of ids) {
        const f = uppy.getFile(id);
        const created = await json(await fetch(`${broker}/v1/uploads`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({
            profile: 'file', filename: f.name, content_type: f.type, size: f.size,
            mode: f.size > 100 * 1024 * 1024 ? 'multipart' : 'put',
          }),
        }));
        uppy.setFileMeta(id, { latchkeyKey: created.key, latchkeyId: created.id });
      }
    });
    opts = {
      generateObjectKey: (f) => uppy.getFile(f.id).meta.latchkeyKey,
      signRequest: async (req) => json(await fetch(`${broker}/s3/sign`, {
        method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(req),
      })),
    };
  } else {
    const c = await json(await fetch(`${broker}/s3/credentials?profile=file`, { headers: auth }));
    opts = {
      s3Endpoint: `${c.endpoint.replace(/\/$/, '')}/${c.bucket}`,
      region: c.region,
      getCredentials: async () => c,
      generateObjectKey: (f) => `${c.prefix}${crypto.randomUUID()}-${f.name}`,
    };
  }
  uppy.use(AwsS3, opts);
  const fill = (n) => { const a = new Uint8Array(n); for (let i = 0; i < n; i += 4096) a[i] = (i / 4096) & 255; return a; };
  for (const [i, size] of sizes.entries()) {
    uppy.addFile({ name: `${mode}-${i}.bin`, type: 'application/octet-stream', data: new Blob([fill(size)], { type: 'application/octet-stream' }) });
  }
  const result = await uppy.upload();
  return {
    successful: result.successful.map((f) => ({ name: f.name, key: f.uploadURL })),
    failed: result.failed.map((f) => ({ name: f.name, error: String(f.error) })),
  };
}

async function uppyModes() {
  const bundle = await bundleUppy();
  const html = '<!doctype html><meta charset="utf-8"><title>Uppy against latchkey</title><script src="/uppy.js"></script><p>Uppy test page</p>';
  const server = createServer((req, res) => {
    if (req.url === '/uppy.js') { res.writeHead(200, { 'content-type': 'text/javascript' }); res.end(bundle); return; }
    res.writeHead(200, { 'content-type': 'text/html' }); res.end(html);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const caps = await (await fetch(`${BROKER}/readyz`)).text().catch(() => '');
  try {
    for (const mode of ['companion', 'signRequest', 'getCredentials']) {
      const user = `uppy-${mode.toLowerCase()}-${Date.now().toString(36)}`;
      const token = await devToken(user);
      const context = await browser.newContext();
      const page = await context.newPage();
      consoleErrors(page, mode);
      await page.goto(origin);
      const sizes = [256 * 1024 + 7, 101 * MIB + 13];
      const out = await page.evaluate(uppyInPage, { mode, broker: BROKER, token, sizes });
      await context.close();
      if (out.failed.length || out.successful.length !== 2) {
        throw new Error(`uppy ${mode}: ${JSON.stringify(out)}`);
      }
      // Both end committed in the ledger (single uploads commit when the
      // store reports the write; multipart ones on complete).
      const rows = await waitFor(`uppy ${mode}: two committed uploads`, async () => {
        const r = await listUploads(token);
        return r.length === 2 && r.every((u) => u.status === 'committed') ? r : null;
      });
      const got = rows.map((r) => r.size).sort((a, b) => a - b);
      if (JSON.stringify(got) !== JSON.stringify(sizes)) throw new Error(`uppy ${mode}: sizes ${got}`);
      log(`uppy ${mode}: small and ${Math.round(sizes[1] / MIB)} MiB uploads committed (${rows.map((r) => r.mode).join(', ')})`);
    }
  } finally {
    server.close();
  }
  void caps;
}

for (const [name, fn] of [['demo', demo], ['uppy', uppyModes]]) {
  if (!ONLY.split(',').includes(name)) continue;
  try {
    await fn();
  } catch (e) {
    log(`FAILED ${name}:`, e.stack || e);
    failures.push(name);
  }
}
await browser.close();
if (failures.length) {
  console.error(`[browser] failed: ${failures.join(', ')}`);
  process.exit(1);
}
log('all browser tests passed');
