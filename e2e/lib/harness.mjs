// Test harness: the real relaycast binary serving the release build of the app (dist/), and
// Debian's Chromium driven by Playwright. Everything binds to 127.0.0.1.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
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

/** Start relaycast; resolves once it prints its URL. */
export async function startServer({ port, dataDir, args = [] }) {
  const proc = spawn(BIN, ['--bind', `127.0.0.1:${port}`, '--data-dir', dataDir, '--static-dir', join(root, 'dist'),
    '--log', 'warn', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relaycast did not start in 10 s')), 10_000);
    proc.stdout.on('data', (d) => { if (String(d).includes('Relaycast is running')) { clearTimeout(timer); resolve(); } });
    proc.on('exit', (code) => reject(new Error(`relaycast exited with ${code}`)));
  });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    /** SIGKILL, as a crash. */
    async kill() { proc.kill('SIGKILL'); await exited; },
    async stop() { proc.kill('SIGTERM'); await exited; },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

/** A new user (own storage) on a page of its own. */
export async function newUser(browser) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return page;
}

/** Open the room's link, give a name, join, and wait until online. */
export async function joinRoom(page, server, room, name) {
  await page.goto(`${server.url}/r/${room}`);
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

export async function peerNames(page) {
  return page.locator('#peers li').allInnerTexts();
}
