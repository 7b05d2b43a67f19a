// latchkey's demo page: sign in, drop files, upload them in the chosen mode
// straight to the store (or through tus), and watch the gallery. No
// framework and no build step; XHR is used where upload progress matters.
'use strict';

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'latchkey.token';
const MODE_KEY = 'latchkey.mode';
const PROFILE_KEY = 'latchkey.profile';
const POLL_MS = 2000;
const TUS_CHUNK = 8 * 1024 * 1024;

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  mode: localStorage.getItem(MODE_KEY) || 'put',
  profile: localStorage.getItem(PROFILE_KEY) || 'photo',
  thumbs: new Map(), // upload id -> { status, url }
  pollTimer: null,
};

// ---- API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** One request with upload progress: resolves with the XHR once 2xx. */
function send(method, url, { headers = {}, body, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) {
      // Browsers set these themselves.
      if (!['content-length', 'host'].includes(k.toLowerCase())) xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total); };
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300
      ? resolve(xhr)
      : reject(new Error(storeError(xhr))));
    xhr.onerror = () => reject(new Error('network error'));
    xhr.send(body);
  });
}

function storeError(xhr) {
  const code = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText || '');
  if (code) return `store refused: ${code[1]}`;
  try { return JSON.parse(xhr.responseText).detail || `HTTP ${xhr.status}`; } catch { return `HTTP ${xhr.status}`; }
}

// ---- Uploaders, one per mode ------------------------------------------------

function createUpload(file, mode) {
  return api('POST', '/v1/uploads', {
    profile: state.profile,
    filename: file.name,
    content_type: file.type || 'application/octet-stream',
    size: file.size,
    mode,
  });
}

const uploaders = {
  async put(file, progress) {
    const up = await createUpload(file, 'put');
    await send(up.grant.method, up.grant.url, { headers: up.grant.headers, body: file, onProgress: progress });
    return api('POST', `/v1/uploads/${up.id}/complete`, {});
  },

  async post(file, progress) {
    const up = await createUpload(file, 'post');
    const form = new FormData();
    for (const [k, v] of Object.entries(up.grant.fields)) form.append(k, v);
    form.append('file', file);
    // The form envelope adds a little: scale progress to the file.
    await send('POST', up.grant.url, {
      body: form,
      onProgress: (loaded, total) => progress(Math.min(file.size, Math.round(loaded / total * file.size)), file.size),
    });
    return api('POST', `/v1/uploads/${up.id}/complete`, {});
  },

  async multipart(file, progress) {
    const up = await createUpload(file, 'multipart');
    const { part_size: size, part_count: count } = up.grant.multipart;
    const urls = new Map(up.grant.multipart.parts.map((p) => [p.number, p]));
    const missing = [];
    for (let n = 1; n <= count; n++) if (!urls.has(n)) missing.push(n);
    for (let i = 0; i < missing.length; i += 1000) {
      const more = await api('POST', `/v1/uploads/${up.id}/parts`, { numbers: missing.slice(i, i + 1000) });
      for (const p of more.parts) urls.set(p.number, p);
    }
    const done = new Array(count + 1).fill(0);
    const report = () => progress(done.reduce((a, b) => a + b, 0), file.size);
    const parts = [];
    let next = 1;
    // Three parts in flight at a time.
    const worker = async () => {
      while (next <= count) {
        const n = next++;
        const part = urls.get(n);
        const blob = file.slice((n - 1) * size, Math.min(n * size, file.size));
        const xhr = await send('PUT', part.url, {
          headers: part.headers, body: blob,
          onProgress: (loaded) => { done[n] = loaded; report(); },
        });
        done[n] = blob.size; report();
        parts.push({ number: n, etag: xhr.getResponseHeader('etag') });
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    parts.sort((a, b) => a.number - b.number);
    return api('POST', `/v1/uploads/${up.id}/complete`, { parts });
  },

  async tus(file, progress) {
    const b64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
    const meta = [
      `profile ${b64(state.profile)}`,
      `filename ${b64(file.name)}`,
      `filetype ${b64(file.type || 'application/octet-stream')}`,
    ].join(',');
    const auth = { Authorization: `Bearer ${state.token}`, 'Tus-Resumable': '1.0.0' };
    const created = await fetch('/tus/', {
      method: 'POST',
      headers: { ...auth, 'Upload-Length': String(file.size), 'Upload-Metadata': meta },
    });
    if (created.status !== 201) {
      const text = await created.text();
      let detail = `tus create: HTTP ${created.status}`;
      try { detail = JSON.parse(text).detail || detail; } catch { /* not JSON */ }
      throw new Error(detail);
    }
    const location = new URL(created.headers.get('Location'), window.location.href).toString();
    let offset = 0;
    while (offset < file.size) {
      const chunk = file.slice(offset, offset + TUS_CHUNK);
      const start = offset;
      const xhr = await send('PATCH', location, {
        headers: { ...auth, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
        body: chunk,
        onProgress: (loaded) => progress(start + loaded, file.size),
      });
      offset = Number(xhr.getResponseHeader('Upload-Offset'));
      progress(offset, file.size);
    }
    const id = location.replace(/\/+$/, '').split('/').pop();
    return api('GET', `/v1/uploads/${id}`);
  },
};

// ---- Queue ------------------------------------------------------------------

function humanSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

async function uploadFile(file) {
  const item = $('#queue-item').content.firstElementChild.cloneNode(true);
  item.querySelector('.qname').textContent = file.name;
  item.querySelector('.qsize').textContent = humanSize(file.size);
  const stateEl = item.querySelector('.qstate');
  const fill = item.querySelector('.fill');
  const mode = state.mode;
  item.dataset.mode = mode;
  stateEl.textContent = `${mode} · starting`;
  $('#queue').prepend(item);
  const progress = (loaded, total) => {
    const pct = total ? Math.round((loaded / total) * 100) : 100;
    fill.style.width = `${pct}%`;
    stateEl.textContent = `${mode} · ${pct}%`;
  };
  try {
    const row = await uploaders[mode](file, progress);
    fill.style.width = '100%';
    item.classList.add('done');
    item.dataset.upload = row.id;
    stateEl.textContent = `${mode} · ${row.status}`;
  } catch (e) {
    item.classList.add('failed');
    stateEl.textContent = e.message;
    stateEl.title = e.message;
  }
  refreshGallery();
}

function addFiles(files) {
  for (const f of files) uploadFile(f);
}

// ---- Gallery ----------------------------------------------------------------

const VISIBLE = ['pending', 'processing', 'committed', 'rejected'];

async function thumbnailFor(row) {
  const known = state.thumbs.get(row.id);
  if (known && known.status === row.status) return known.url;
  let url = null;
  if (row.status === 'committed' && (row.content_type || '').startsWith('image/')) {
    try {
      url = (await api('GET', `/v1/uploads/${row.id}/download?variant=thumb`)).url;
    } catch {
      try { url = (await api('GET', `/v1/uploads/${row.id}/download`)).url; } catch { url = null; }
    }
  }
  state.thumbs.set(row.id, { status: row.status, url });
  return url;
}

async function refreshGallery() {
  if (!state.token) return;
  let page;
  try {
    page = await api('GET', '/v1/uploads?limit=60');
  } catch (e) {
    if (e.status === 401) signOut();
    return;
  }
  const rows = page.items.filter((r) => VISIBLE.includes(r.status));
  const gallery = $('#gallery');
  $('#empty').hidden = rows.length > 0;
  $('#count').textContent = rows.length ? `${rows.length} upload${rows.length === 1 ? '' : 's'}` : '';
  const existing = new Map([...gallery.children].map((li) => [li.dataset.id, li]));
  const ordered = [];
  for (const row of rows) {
    let li = existing.get(row.id);
    if (!li) {
      li = $('#gallery-item').content.firstElementChild.cloneNode(true);
      li.dataset.id = row.id;
    }
    li.dataset.status = row.status;
    li.querySelector('.tname').textContent = row.filename || row.key;
    li.querySelector('.tname').title = row.filename || row.key;
    const badge = li.querySelector('.badge');
    badge.textContent = row.status;
    badge.className = `badge ${row.status}`;
    const ext = (row.filename.split('.').pop() || 'file').slice(0, 5);
    li.querySelector('.placeholder').textContent = row.status === 'committed' ? ext : row.status;
    const dims = row.width ? ` · ${row.width}×${row.height}` : '';
    li.querySelector('.tsub').textContent = `${humanSize(row.size)} · ${row.mode}${dims}${row.reason ? ` · ${row.reason}` : ''}`;
    const img = li.querySelector('img');
    thumbnailFor(row).then((url) => {
      if (url && img.dataset.for !== `${row.id}:${row.status}`) {
        img.dataset.for = `${row.id}:${row.status}`;
        img.src = url;
        img.alt = row.filename;
        img.onerror = () => img.removeAttribute('src');
      }
    });
    ordered.push(li);
  }
  gallery.replaceChildren(...ordered);
  // The queue follows its uploads to their final state (photos go through
  // processing before they are committed).
  const statusOf = new Map(page.items.map((r) => [r.id, r.status]));
  for (const item of document.querySelectorAll('#queue .qitem.done')) {
    const status = statusOf.get(item.dataset.upload);
    if (status) item.querySelector('.qstate').textContent = `${item.dataset.mode} · ${status}`;
  }
}

// ---- Session ----------------------------------------------------------------

function userOf(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub || 'user';
  } catch {
    return 'API key';
  }
}

function showApp() {
  const signedIn = Boolean(state.token);
  $('#signin').hidden = signedIn;
  $('#app').hidden = !signedIn;
  $('#session').hidden = !signedIn;
  clearInterval(state.pollTimer);
  if (!signedIn) return;
  const who = userOf(state.token);
  $('#who').textContent = who;
  $('#avatar').textContent = who.slice(0, 1);
  refreshGallery();
  state.pollTimer = setInterval(refreshGallery, POLL_MS);
}

function signIn(token) {
  state.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  showApp();
}

function signOut() {
  state.token = null;
  state.thumbs.clear();
  localStorage.removeItem(TOKEN_KEY);
  $('#gallery').replaceChildren();
  $('#queue').replaceChildren();
  showApp();
}

async function checkToken(token) {
  const res = await fetch('/v1/uploads?limit=1', { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const p = await res.json().catch(() => null);
    throw new Error((p && p.detail) || `HTTP ${res.status}`);
  }
}

function wire() {
  $('#dev-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('#dev-error');
    err.hidden = true;
    const res = await fetch('/v1/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: $('#dev-user').value.trim() }),
    });
    const body = await res.json().catch(() => null);
    if (res.ok) return signIn(body.token);
    err.textContent = res.status === 404
      ? 'Dev sign-in is off: this latchkey verifies real tokens. Paste one instead.'
      : (body && body.detail) || `HTTP ${res.status}`;
    err.hidden = false;
  });

  $('#token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('#token-error');
    err.hidden = true;
    const token = $('#token-input').value.trim();
    try {
      await checkToken(token);
      signIn(token);
    } catch (x) {
      err.textContent = x.message;
      err.hidden = false;
    }
  });

  $('#signout').addEventListener('click', signOut);

  const buttons = [...document.querySelectorAll('#modes button')];
  const setMode = (mode) => {
    state.mode = mode;
    localStorage.setItem(MODE_KEY, mode);
    for (const b of buttons) b.setAttribute('aria-checked', String(b.dataset.mode === mode));
  };
  for (const b of buttons) b.addEventListener('click', () => setMode(b.dataset.mode));
  setMode(state.mode);

  const profile = $('#profile');
  profile.value = state.profile;
  profile.addEventListener('change', () => {
    state.profile = profile.value;
    localStorage.setItem(PROFILE_KEY, profile.value);
  });

  const zone = $('#dropzone');
  const input = $('#file-input');
  input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
  for (const ev of ['dragenter', 'dragover']) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add('over'); });
  }
  for (const ev of ['dragleave', 'drop']) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.remove('over'); });
  }
  zone.addEventListener('drop', (e) => addFiles(e.dataTransfer.files));
  // A file dropped outside the zone must not navigate away.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());

  showApp();
}

wire();
