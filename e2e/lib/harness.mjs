// Test harness: the real relaycast binary serving the release build of the app (dist/), and
// Debian's Chromium driven by Playwright. Everything binds to 127.0.0.1.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const artifacts = join(root, 'e2e', 'artifacts');
mkdirSync(artifacts, { recursive: true });

const BIN = process.env.RELAYCAST_BIN ?? join(root, 'target', 'debug', 'relaycast');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'relaycast-e2e-'));
}

/** Start relaycast; resolves once it prints its URL (https with a TLS flag). */
export async function startServer({ port, dataDir, args = [], host = '127.0.0.1' }) {
  // Open mode unless the journey passes its own --auth (the last flag wins).
  const proc = spawn(BIN, ['--auth', 'open', '--bind', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--static-dir', join(root, 'dist'), '--log', 'warn', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relaycast did not start in 10 s')), 10_000);
    proc.stdout.on('data', (d) => { if (String(d).includes('Relaycast is running')) { clearTimeout(timer); resolve(); } });
    proc.on('exit', (code) => reject(new Error(`relaycast exited with ${code}`)));
  });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const tls = args.some((a) => a.startsWith('--tls'));
  return {
    url: `${tls ? 'https' : 'http'}://${host}:${port}`,
    /** SIGKILL, as a crash. */
    async kill() { proc.kill('SIGKILL'); await exited; },
    async stop() { proc.kill('SIGTERM'); await exited; },
  };
}

/** A real redis-server on a free loopback port, its AOF fsynced on every write (cluster mode). */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'yes', '--appendfsync', 'always', '--dir', tempDir()], { stdio: 'ignore' });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const { connect } = await import('node:net');
  for (let i = 0; ; i++) {
    const up = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (i > 200) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `redis://127.0.0.1:${port}/`, async stop() { proc.kill('SIGKILL'); await exited; } };
}

export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required', ...extraArgs],
  });
}

/** A new user (own storage) on a page of its own. */
export async function newUser(browser) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  // Kept for failure messages: WebRTC problems show up as console warnings.
  page.consoleLog = [];
  page.on('console', (m) => { if (m.type() !== 'log') page.consoleLog.push(`${m.type()}: ${m.text()}`); });
  return page;
}

/** WebRTC journeys need a network namespace with only loopback, so that no ICE check leaves
 * it; `scripts/dev test` provides one (as root) and sets this. */
export const netns = process.env.RELAYCAST_E2E_NETNS === '1';
export const needsNetns = netns ? false : 'needs a loopback-only network namespace: run through scripts/dev test as root';

/** Poll `check` until it returns a truthy value. */
export async function until(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Frames decoded and audio packets received from each remote peer, by peer id. */
export async function mediaFrom(page) {
  return page.locator('.tile[data-peer]').evaluateAll((tiles) => Object.fromEntries(tiles.map((t) => {
    const q = t.querySelector('.quality');
    return [t.dataset.peer, { frames: Number(q?.dataset.framesDecoded ?? 0), audio: Number(q?.dataset.audioPackets ?? 0) }];
  })));
}

/** Wait until `page` decodes video and receives audio from `count` peers, with video growing. */
export async function decodesFrom(page, count) {
  const first = await until(`video from ${count} peers`, async () => {
    const m = await mediaFrom(page);
    const live = Object.values(m).filter((x) => x.frames > 0 && x.audio > 0);
    return live.length >= count && m;
  }, 30_000).catch((e) => {
    throw new Error(`${e.message}; page console:\n${(page.consoleLog ?? []).slice(-20).join('\n')}`);
  });
  await until('frames to keep coming', async () => {
    const m = await mediaFrom(page);
    return Object.keys(first).every((p) => m[p] && m[p].frames > first[p].frames + 5);
  });
  return first;
}

/** Open the room's link, give a name, join, and wait until online. */
export async function joinRoom(page, server, room, name, query = '') {
  await page.goto(`${server.url}/r/${room}${query}`);
  await page.locator('#name').fill(name);
  await page.locator('#join').click();
  await page.locator('#status', { hasText: 'online' }).waitFor();
}

export async function say(page, text) {
  await page.locator('#draft').fill(text);
  await page.locator('#draft').press('Enter');
}

/** A delivered (not pending) message with this text. */
export function message(page, text) {
  return page.locator('#messages li.msg:not(.pending)', { hasText: text });
}

/** Everyone listed in the People tab (open or not). */
export async function peerNames(page) {
  return page.locator('#peers li .who').allTextContents();
}

/** Open a tab of the side panel: 'chat', 'people' or 'files'. */
export async function openTab(page, tab) {
  await page.locator(`#tab-${tab}`).click();
  await page.locator(`#panel-${tab}`).waitFor();
}

/** Run axe-core (from npm, injected into the page) on what the page shows now: fails on any
 * serious or critical violation and returns every violation's id and impact, which is also
 * written to artifacts/axe-<label>.json for the record. */
export async function checkA11y(page, label) {
  const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.addScriptTag({ path: axePath });
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const violations = results.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  mkdirSync(artifacts, { recursive: true });
  writeFileSync(join(artifacts, `axe-${label}.json`), JSON.stringify({ label, passes: results.passes.length, violations }, null, 2));
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) throw new Error(`axe on ${label}: ${JSON.stringify(bad, null, 1)}`);
  return violations;
}

/** Start or join the call: "Join call", then join from the pre-join screen with whatever it
 * could open. */
export async function joinCall(page) {
  await page.locator('#call-join').click();
  const join = page.locator('#prejoin-join:not([disabled])');
  await join.waitFor();
  await join.click();
  await page.locator('#call-leave').waitFor();
}
