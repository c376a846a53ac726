// What goes wrong, said plainly: a full room, an unreachable server, a denied camera; and the
// layout on a phone-sized screen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { artifacts, freePort, tempDir, startServer, launchBrowser, newUser, joinRoom, say, message } from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('a full room says so and does not retry', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir(), args: ['--max-peers-per-room', '1'] });
  try {
    const a = await newUser(browser);
    await joinRoom(a, server, 'tiny', 'First');
    const b = await newUser(browser);
    await b.goto(`${server.url}/r/tiny`);
    await b.locator('#name').fill('Second');
    await b.locator('#join').click();
    await b.locator('#problem', { hasText: 'This room is full' }).waitFor();
    await b.locator('#status', { hasText: 'offline' }).waitFor();
    // Nothing in the room works, so nothing in it can be used: the controls are shut (and
    // greyed); leaving still works.
    assert.notEqual(await b.locator('.layout').getAttribute('inert'), null);
    await b.locator('#draft').focus().catch(() => {});
    assert.notEqual(await b.evaluate(() => document.activeElement?.id), 'draft');
    await b.locator('#leave').click();
    await b.locator('#lobby').waitFor();
    // The one who got in has a room that works.
    assert.equal(await a.locator('.layout').getAttribute('inert'), null);
  } finally {
    await server.stop();
  }
});

test('an unreachable server is reported while the app keeps retrying', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  const a = await newUser(browser);
  await joinRoom(a, server, 'lonely', 'Ada');
  await server.kill();
  await a.locator('#problem', { hasText: 'cannot be reached' }).waitFor({ timeout: 15_000 });
  await a.locator('#status', { hasText: 'reconnecting in' }).waitFor();
});

test('a denied camera is explained on the pre-join screen, and joining without it is offered', async () => {
  // Without --use-fake-ui-for-media-stream nobody answers the permission prompt: denied,
  // unless the context granted it.
  const strict = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-fake-device-for-media-stream'],
  });
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    // Nothing allowed: told why, and offered to join to watch and listen.
    const page = await (await strict.newContext()).newPage();
    await joinRoom(page, server, 'private', 'Ada');
    await page.locator('#call-join').click();
    await page.locator('#prejoin-problem', { hasText: 'permission was denied' }).waitFor();
    const join = page.locator('#prejoin-join');
    assert.equal(await join.textContent(), 'Join to watch and listen');
    await join.click();
    await page.locator('#call-leave').waitFor();

    // The microphone allowed, the camera not: join with the microphone only.
    const context = await strict.newContext({ permissions: ['microphone'] });
    const grace = await context.newPage();
    await joinRoom(grace, server, 'private', 'Grace');
    await grace.locator('#call-join').click();
    await grace.locator('#prejoin-problem', { hasText: 'camera permission was denied' }).waitFor();
    // The meter moves with the fake microphone's beeps.
    await grace.waitForFunction(() => Number(document.querySelector('#prejoin .level')?.dataset.level) > 0.01, null, { timeout: 10_000 });
    assert.equal(await grace.locator('#prejoin-join').textContent(), 'Join without camera');
    assert.equal(await grace.locator('#prejoin-camera').isDisabled(), true, 'no camera to turn on');
    await grace.locator('#prejoin-join').click();
    await grace.locator('#call-leave').waitFor();
    assert.equal(await grace.locator('#mute').getAttribute('aria-pressed'), 'false', 'the microphone is on');
    assert.equal(await grace.locator('#camera').getAttribute('aria-pressed'), 'true', 'the camera is off');
  } finally {
    await server.stop();
    await strict.close();
  }
});

test('on a phone-sized screen the room stacks and stays usable', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const phone = await context.newPage();
    await joinRoom(phone, server, 'pocket', 'Ada');
    await say(phone, 'typed on a phone');
    await message(phone, 'typed on a phone').waitFor();
    for (const selector of ['.stage', '.side', '.chat', '#compose', '.control-bar']) {
      const box = await phone.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390 + 1, `${selector} fits the screen width`);
    }
    await phone.screenshot({ path: join(artifacts, 'phone.png') });
    // Keyboard only: Tab reaches the message box and Enter sends.
    await phone.locator('#draft').focus();
    await phone.keyboard.type('sent with the keyboard');
    await phone.keyboard.press('Enter');
    await message(phone, 'sent with the keyboard').waitFor();
  } finally {
    await server.stop();
  }
});
