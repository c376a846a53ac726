// Journeys 2, 3 (call part) and 5: peer-to-peer calls between real pages with Chromium's fake
// camera and microphone, signaled through the real server; a three-way mesh; and a call forced
// through TURN (coturn) with credentials minted by the server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { artifacts, freePort, tempDir, startServer, launchBrowser, newUser, joinRoom, say, message, until, openTab,
  decodesFrom, needsNetns, joinCall } from '../lib/harness.mjs';

let browser;
before(async () => { if (!needsNetns) browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('two pages call: each decodes the other\'s video and audio, and a data-channel message arrives', { skip: needsNetns }, async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    const b = await newUser(browser);
    await joinRoom(a, server, 'call', 'Ada');
    await joinRoom(b, server, 'call', 'Grace');
    await joinCall(a);
    await joinCall(b);
    await decodesFrom(a, 1);
    await decodesFrom(b, 1);
    // Chromium's fake microphone beeps once a second: Grace sees Ada's speaking ring light up
    // with a beep and go dark in the silence after it (read several times a second).
    await b.locator('.tile[data-peer][data-speaking="true"]').waitFor({ timeout: 10_000 });
    await b.locator('.tile[data-peer][data-speaking="false"]').waitFor({ timeout: 10_000 });
    // Ada mutes and turns her camera off: Grace's tile of her says so (her initial instead
    // of a black picture); Ctrl+D turns the microphone back on.
    await a.locator('#mute').click();
    await a.locator('#camera').click();
    const adaTile = b.locator('.tile[data-peer]');
    await adaTile.locator('.mic-off').waitFor();
    await b.locator('.tile[data-peer].camera-off .tile-avatar', { hasText: 'A' }).waitFor();
    await a.keyboard.press('Control+d');
    await adaTile.locator('.mic-off').waitFor({ state: 'detached' });
    assert.equal(await a.locator('#mute').getAttribute('aria-pressed'), 'false', 'the shortcut unmuted');
    await a.locator('#camera').click();
    await b.locator('.tile[data-peer].camera-off').waitFor({ state: 'detached' });

    await openTab(a, 'people');
    await openTab(b, 'people');
    await a.locator('#dm-input').fill('hello over the data channel');
    await a.locator('#dm-send').click();
    await b.locator('#dms li', { hasText: 'hello over the data channel' }).waitFor();
    await a.screenshot({ path: join(artifacts, 'call.png') });

    // Leaving the call stops the media; the other page drops the tile.
    await b.locator('#call-leave').click();
    await a.locator('.tile[data-peer]').waitFor({ state: 'detached', timeout: 20_000 });
  } finally {
    await server.stop();
  }
});

test('a third page joins late, sees the history, then joins the call: a three-way mesh', { skip: needsNetns }, async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    const b = await newUser(browser);
    await joinRoom(a, server, 'mesh', 'Ada');
    await joinRoom(b, server, 'mesh', 'Grace');
    await say(a, 'call starting');
    await message(b, 'call starting').waitFor();
    await joinCall(a);
    await joinCall(b);
    await decodesFrom(a, 1);

    const c = await newUser(browser);
    await joinRoom(c, server, 'mesh', 'Linus');
    await message(c, 'call starting').waitFor();
    await joinCall(c);
    for (const page of [a, b, c]) await decodesFrom(page, 2);
    await c.screenshot({ path: join(artifacts, 'mesh.png') });
  } finally {
    await server.stop();
  }
});

test('relay-only through coturn with credentials minted by the server', { skip: needsNetns }, async () => {
  const turnPort = await freePort();
  const secret = 'e2e-' + Math.random().toString(36).slice(2);
  const dir = tempDir();
  const log = join(dir, 'turn.log');
  const turn = spawn('turnserver', ['-n', '-v', '--listening-ip=127.0.0.1', `--listening-port=${turnPort}`,
    '--relay-ip=127.0.0.1', '--min-port=49160', '--max-port=49200', '--use-auth-secret',
    `--static-auth-secret=${secret}`, '--realm=relaycast.test', '--allow-loopback-peers', '--fingerprint',
    '--no-cli', '--no-tls', '--no-dtls', `--log-file=${log}`, '--simple-log', `--pidfile=${join(dir, 'turn.pid')}`,
    `--db=${join(dir, 'turn.db')}`], { stdio: 'ignore' });
  const server = await startServer({ port: await freePort(), dataDir: tempDir(),
    args: ['--turn-url', `turn:127.0.0.1:${turnPort}?transport=udp`, '--turn-secret', secret] });
  try {
    const a = await newUser(browser);
    const b = await newUser(browser);
    await joinRoom(a, server, 'relayed', 'Ada', '?ice=relay');
    await joinRoom(b, server, 'relayed', 'Grace', '?ice=relay');
    await joinCall(a);
    await joinCall(b);
    // Relay-only: no host candidate may be used, so media flowing means it went through TURN.
    try {
      await decodesFrom(a, 1);
      await decodesFrom(b, 1);
    } catch (e) {
      // Say why: what coturn saw and what each page's call shows.
      const tail = readFileSync(log, 'utf8').split('\n').slice(-25).join('\n');
      const states = await Promise.all([a, b].map((p) => p.locator('.call').innerText().catch(() => '?')));
      throw new Error(`${e.message}\ncoturn log tail:\n${tail}\npages:\n${states.join('\n---\n')}`);
    }
    const turnLog = readFileSync(log, 'utf8');
    // Each page's first request is challenged (401 with a nonce, as TURN does); the retry
    // with the minted credentials must succeed.
    assert.match(turnLog, /ALLOCATE processed, success/, 'coturn accepted the minted credentials');
  } finally {
    await server.stop();
    turn.kill('SIGTERM');
  }
});
