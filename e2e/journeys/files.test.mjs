// Journeys for files: a file sent peer to peer between two pages, and a file fetched from the
// server's cache by a page that joined after the sender left (with an interrupted download
// resumed by Range). The bytes are checked by SHA-256 in the receiving page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { artifacts, freePort, tempDir, startServer, launchBrowser, newUser, joinRoom, message, until, needsNetns, openTab }
  from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
// A 2×2 PNG, so that the preview has something to decode.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==', 'base64');

/** The row of a file on `page`, once it is in `phase`. */
async function row(page, hash, phase = 'done') {
  const li = page.locator(`#transfers li[data-hash="${hash}"][data-phase="${phase}"]`);
  await li.waitFor({ state: 'attached', timeout: 30_000 }).catch((e) => {
    throw new Error(`${e.message}; page console:\n${(page.consoleLog ?? []).slice(-30).join('\n')}`);
  });
  return li;
}

/** SHA-256 of what the page's "Save" link holds: the bytes the page received. */
async function savedHash(li) {
  const href = await li.locator('a.save').getAttribute('href');
  return li.page().evaluate(async (url) => {
    const bytes = await (await fetch(url)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }, href);
}

test('a file goes peer to peer between two pages, checked by hash', { skip: needsNetns }, async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    const b = await newUser(browser);
    await joinRoom(a, server, 'p2p-files', 'Ada');
    await joinRoom(b, server, 'p2p-files', 'Grace');
    const data = randomBytes(3 * 1024 * 1024 + 123);
    const hash = sha256(data);
    await a.locator('#file-input').setInputFiles({ name: 'measurements.bin', mimeType: 'application/octet-stream', buffer: data });

    const received = await row(b, hash);
    assert.equal(await received.getAttribute('data-via'), 'peer', 'the peer-to-peer copy arrived first');
    assert.equal(await received.getAttribute('data-verified'), 'true');
    assert.equal(await savedHash(received), hash);
    // The sender's upload finished too, and the room was told.
    await row(a, hash);
    await message(b, 'measurements.bin').waitFor();
    // The Files tab, closed meanwhile, counts what came in.
    assert.equal(await b.locator('#tab-files .badge').textContent(), '1');
    await openTab(b, 'files');
    assert.equal(await b.locator('#tab-files .badge').count(), 0, 'seen: no badge');
    await b.screenshot({ path: join(artifacts, 'files.png') });
  } finally {
    await server.stop();
  }
});

test('a peer-to-peer transfer that stalls falls back to the server', { skip: needsNetns }, async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    // The sender's browser stops putting file chunks on the wire after the first twenty,
    // as a peer whose path died would: the receiver sees no progress.
    await a.addInitScript(() => {
      const send = RTCDataChannel.prototype.send;
      let chunks = 0;
      RTCDataChannel.prototype.send = function (data) {
        if (this.label === 'files' && ++chunks > 20) return;
        return send.call(this, data);
      };
    });
    const b = await newUser(browser);
    await joinRoom(a, server, 'stall', 'Ada');
    await joinRoom(b, server, 'stall', 'Grace');
    const data = randomBytes(4 * 1024 * 1024);
    const hash = sha256(data);
    await a.locator('#file-input').setInputFiles({ name: 'stalls.bin', mimeType: 'application/octet-stream', buffer: data });

    const received = await row(b, hash);
    assert.equal(await received.getAttribute('data-via'), 'server');
    assert.equal(await savedHash(received), hash);
    const log = b.consoleLog.join('\n');
    assert.match(log, /offers stalls\.bin/, 'it started peer to peer');
    assert.match(log, /stalled or left; fetching from the server/, 'and fell back');
  } finally {
    await server.stop();
  }
});

test('a page that joins after the sender left gets the files (one sent by drag-and-drop) from the server, resuming a cut download', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    await joinRoom(a, server, 'late-files', 'Ada');
    const data = randomBytes(5 * 1024 * 1024);
    const [dataHash, pngHash] = [sha256(data), sha256(PNG)];
    await a.locator('#file-input').setInputFiles({ name: 'dataset.bin', mimeType: 'application/octet-stream', buffer: data });
    // The image is dropped on the room instead.
    await a.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dot.png', { type: 'image/png' }));
      document.querySelector('.room').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, PNG.toString('base64'));
    await row(a, dataHash);
    await row(a, pngHash);
    await a.locator('#leave').click();
    await a.context().close();

    const c = await newUser(browser);
    // The first download of the large file is cut after half its bytes, as a dropped
    // connection would; the app must ask for the rest with Range and If-Range.
    const ranges = [];
    let cut = false;
    await c.route(`**/api/rooms/late-files/blobs/${dataHash}*`, async (route) => {
      ranges.push(route.request().headers()['range'] ?? null);
      if (cut) return route.continue();
      cut = true;
      const response = await route.fetch();
      const body = await response.body();
      const half = Math.floor(body.length / 2);
      await route.fulfill({ status: 200, headers: { ...response.headers(), 'content-length': String(half) }, body: body.subarray(0, half) });
    });
    await joinRoom(c, server, 'late-files', 'Linus');
    await message(c, 'dataset.bin').waitFor();

    const big = await row(c, dataHash);
    assert.equal(await big.getAttribute('data-via'), 'server');
    assert.equal(await savedHash(big), dataHash);
    assert.deepEqual(ranges, [null, `bytes=${data.length / 2}-`], 'resumed from where it was cut');

    const image = await row(c, pngHash);
    assert.equal(await image.getAttribute('data-verified'), 'true');
    await until('the preview to decode', () => image.locator('img.preview').evaluate((img) => img.complete && img.naturalWidth === 2));
    // In the chat the image is an attachment: shown small, and saved with one click.
    const attachment = c.locator('#messages li.msg', { hasText: 'dot.png' });
    await until('the chat to show the image', () =>
      attachment.locator('img.attachment-preview').evaluate((img) => img.complete && img.naturalWidth === 2));
    const save = attachment.locator('a.attachment-link');
    assert.equal(await save.getAttribute('download'), 'dot.png');
    const [status, disposition] = await c.evaluate(async (href) => {
      const r = await fetch(href);
      return [r.status, r.headers.get('content-disposition')];
    }, await save.getAttribute('href'));
    assert.equal(status, 200);
    assert.match(disposition, /^attachment/);
    await openTab(c, 'files');
    await c.screenshot({ path: join(artifacts, 'late-files.png') });
  } finally {
    await server.stop();
  }
});
