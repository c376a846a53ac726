// The room as a product, at the sizes people use: a laptop (1280x800) with the chat beside
// the stage during a call, a screen share shown whole and pinned, unread badges, the dark
// theme remembered, the call's pre-join screen, a phone (390x844) with the control bar and the message box on screen, and
// axe-core on every view (zero serious or critical violations, light and dark). Screenshots
// of each view go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, freePort, tempDir, startServer, launchBrowser, joinRoom, say, message, until, openTab,
  decodesFrom, checkA11y, needsNetns, joinCall } from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(['--auto-select-desktop-capture-source=Entire screen']); });
after(async () => { await browser?.close(); });

async function page(viewport, options = {}) {
  const context = await browser.newContext({ viewport, ...options });
  const p = await context.newPage();
  p.on('pageerror', (e) => console.error('page error:', e.message));
  return p;
}

/** The element's box is entirely on screen. */
async function inViewport(p, selector) {
  const box = await p.locator(selector).boundingBox();
  const { width, height } = p.viewportSize();
  assert.ok(box, `${selector} is shown`);
  assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= width + 1 && box.y + box.height <= height + 1,
    `${selector} is within the ${width}x${height} viewport: ${JSON.stringify(box)}`);
  return box;
}

const shot = (p, name) => p.screenshot({ path: join(artifacts, `${name}.png`) });

test('on a laptop the chat stays beside the call, a shared screen is shown whole and pinned, and every view passes axe in both themes', { skip: needsNetns }, async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await page({ width: 1280, height: 800 });
    await ada.goto(server.url);
    await ada.locator('#lobby').waitFor();
    await checkA11y(ada, 'lobby-light');
    await shot(ada, 'view-lobby-light');
    // A new room gets a readable name.
    await ada.locator('#new-room').click();
    assert.match(await ada.locator('#room').inputValue(), /^[a-z]+-[a-z]+-\d\d$/);

    await joinRoom(ada, server, 'design-review', 'Ada');
    await checkA11y(ada, 'room-light');
    await shot(ada, 'view-room-light');
    const grace = await page({ width: 1280, height: 800 });
    await joinRoom(grace, server, 'design-review', 'Grace');
    // The pre-join screen: a preview, the pickers listing the fake devices, a moving meter.
    await ada.locator('#call-join').click();
    await ada.locator('#prejoin-join:not([disabled])').waitFor();
    await until('the cameras to be listed', async () => (await ada.locator('#pick-camera option').count()) > 1);
    assert.ok(await ada.locator('#pick-mic option').count() > 1, 'microphones listed');
    await ada.waitForFunction(() => Number(document.querySelector('#prejoin .level')?.dataset.level) > 0.01, null, { timeout: 10_000 });
    await checkA11y(ada, 'prejoin-light');
    await shot(ada, 'view-prejoin-light');
    await ada.locator('#prejoin-join').click();
    await ada.locator('#call-leave').waitFor();
    await joinCall(grace);
    await decodesFrom(ada, 1);

    // Chat during the call: stage, control bar and side panel all on screen, side by side.
    await say(grace, 'Can everyone see the mockups?');
    await message(ada, 'Can everyone see the mockups?').waitFor();
    const stage = await inViewport(ada, '.stage');
    const side = await inViewport(ada, '.side');
    await inViewport(ada, '.control-bar');
    await inViewport(ada, '#compose');
    assert.ok(side.x >= stage.x + stage.width, 'the side panel is beside the stage');
    await inViewport(ada, '#messages li.msg:has-text("Can everyone see the mockups?")');

    // Unread: a message while the chat tab is closed shows on its badge and in the title.
    await openTab(grace, 'people');
    await say(ada, 'Sharing my screen now');
    await until('the unread badge', async () => (await grace.locator('#tab-chat .badge').count()) === 1);
    assert.equal(await grace.locator('#tab-chat .badge').textContent(), '1');
    assert.match(await grace.title(), /^\(1\) design-review/);
    await openTab(grace, 'chat');
    await until('the badge to clear', async () => (await grace.locator('#tab-chat .badge').count()) === 0);
    assert.doesNotMatch(await grace.title(), /^\(/);

    // Ada shares her screen: on Grace's stage it goes large by itself, whole (contain, not
    // cover), her own camera in the strip; she can unpin it back to the grid and pin it again.
    await ada.locator('#share').click();
    await ada.locator('#share[disabled]').waitFor();
    const tile = grace.locator('.tile[data-peer]');
    await until('the shared screen to arrive', () => tile.locator('video').evaluate((v) => v.videoWidth > 0));
    assert.equal(await tile.locator('video').evaluate((v) => getComputedStyle(v).objectFit), 'contain', 'never cropped');
    await grace.locator('.pinned-slot .tile[data-peer]', { hasText: 'Ada (screen)' }).waitFor();
    const graceStage = await grace.locator('.stage').boundingBox();
    const large = await grace.locator('.pinned-slot .tile').boundingBox();
    assert.ok(large.width > graceStage.width * 0.8, 'the shared screen fills the stage');
    assert.equal(await grace.locator('.strip .tile.local').count(), 1, 'her own camera moves to the strip');
    await tile.hover();
    await tile.locator('button.pin').click();
    await grace.locator('.pinned-slot').waitFor({ state: 'detached' });
    const inGrid = await tile.boundingBox();
    assert.ok(inGrid.width < large.width, 'unpinned: back in the grid');
    await tile.hover();
    await tile.locator('button.pin').click();
    await grace.locator('.pinned-slot .tile[data-peer]').waitFor();
    // Devices during the call go through the same pickers.
    await grace.locator('#devices').click();
    await grace.locator('#device-settings #pick-camera').waitFor();
    await checkA11y(grace, 'call-devices-light');
    await grace.locator('#devices').click();
    await checkA11y(grace, 'call-light');
    await shot(grace, 'view-call-pinned-light');
    await shot(ada, 'view-call-light');

    // Dark theme: toggled, remembered across a reload, and still accessible.
    await grace.locator('#theme').click();
    assert.equal(await grace.evaluate(() => document.documentElement.dataset.theme), 'dark');
    await checkA11y(grace, 'call-dark');
    await shot(grace, 'view-call-dark');
    await grace.reload();
    await grace.locator('#status', { hasText: 'online' }).waitFor();
    assert.equal(await grace.evaluate(() => document.documentElement.dataset.theme), 'dark', 'remembered');
    await checkA11y(grace, 'room-dark');
    await shot(grace, 'view-room-dark');
    await grace.locator('#call-join').click();
    await grace.locator('#prejoin-join:not([disabled])').waitFor();
    await checkA11y(grace, 'prejoin-dark');
    await shot(grace, 'view-prejoin-dark');
    await grace.locator('#prejoin-cancel').click();
    await grace.goto(server.url);
    await grace.locator('#lobby').waitFor();
    await checkA11y(grace, 'lobby-dark');
    await shot(grace, 'view-lobby-dark');

    // The invite: the link copied with visible feedback, and a QR code for a phone.
    await ada.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await ada.locator('#invite').click();
    await ada.locator('#invite-qr svg').waitFor();
    await ada.locator('#copy-link').click();
    await ada.locator('#copy-feedback', { hasText: 'Copied' }).waitFor();
    assert.equal(await ada.evaluate(() => navigator.clipboard.readText()), `${server.url}/r/design-review`);
    await checkA11y(ada, 'invite-light');
    await shot(ada, 'view-invite-light');
  } finally {
    await server.stop();
  }
});

test('on a phone the stage is on top, the control bar and the message box stay on screen, in both themes', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const phone = await page({ width: 390, height: 844 }, { isMobile: true, hasTouch: true });
    await joinRoom(phone, server, 'pocket-room', 'Ada');
    for (let i = 1; i <= 30; i++) await say(phone, `line ${i} of a long chat`);
    await message(phone, 'line 30 of a long chat').waitFor();
    const stage = await inViewport(phone, '.stage');
    const side = await inViewport(phone, '.side');
    assert.ok(side.y >= stage.y + stage.height - 1, 'the side panel is under the stage');
    const bar = await inViewport(phone, '.control-bar');
    const compose = await inViewport(phone, '#compose');
    assert.ok(compose.y + compose.height <= bar.y + 1, 'the message box sits above the control bar');
    await inViewport(phone, '#messages li.msg:has-text("line 30 of a long chat")');
    await checkA11y(phone, 'phone-light');
    await shot(phone, 'view-phone-light');
    await phone.locator('#theme').click();
    await checkA11y(phone, 'phone-dark');
    await shot(phone, 'view-phone-dark');
  } finally {
    await server.stop();
  }
});
