// Journeys 1, 3 (history part) and 4: chat and presence between real pages, a late joiner,
// and the server killed and restarted under them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, freePort, tempDir, startServer, launchBrowser, newUser, joinRoom, say, message, peerNames } from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('two pages join a room, chat both ways, and see each other', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await newUser(browser);
    await ada.goto(server.url);
    await ada.locator('#lobby').waitFor();
    await ada.screenshot({ path: join(artifacts, 'lobby.png') });
    await joinRoom(ada, server, 'standup', 'Ada');
    const grace = await newUser(browser);
    await joinRoom(grace, server, 'standup', 'Grace');

    await ada.locator('#peers li', { hasText: 'Grace' }).waitFor({ state: 'attached' });
    assert.deepEqual(await peerNames(grace), ['Grace (you)', 'Ada']);

    await say(ada, 'Morning! Shipping the relay today.');
    await message(grace, 'Shipping the relay today').waitFor();
    await say(grace, 'Great, I will review it.');
    await message(ada, 'I will review it').waitFor();
    // Ours are marked as ours on both sides.
    await ada.locator('#messages li.mine', { hasText: 'Shipping' }).waitFor();
    await grace.locator('#messages li.mine', { hasText: 'review' }).waitFor();
    await ada.screenshot({ path: join(artifacts, 'chat.png') });

    // Leaving is seen by the other.
    await grace.locator('#leave').click();
    await ada.locator('#peers li', { hasText: 'Grace' }).waitFor({ state: 'detached' });

    // After a reload (the room's page rejoins by itself) Ada's messages are still hers, and
    // Grace's still not.
    await ada.reload();
    await ada.locator('#status', { hasText: 'online' }).waitFor();
    await ada.locator('#messages li.mine', { hasText: 'Shipping' }).waitFor();
    await message(ada, 'I will review it').waitFor();
    assert.equal(await ada.locator('#messages li.mine', { hasText: 'review' }).count(), 0);
  } finally {
    await server.stop();
  }
});

test('a late joiner sees the history in order', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const a = await newUser(browser);
    await joinRoom(a, server, 'history', 'Early');
    for (let i = 1; i <= 5; i++) {
      await say(a, `note ${i}`);
      await message(a, `note ${i}`).waitFor();
    }
    const late = await newUser(browser);
    await joinRoom(late, server, 'history', 'Late');
    await message(late, 'note 5').waitFor();
    const texts = await late.locator('#messages li.msg .text').allInnerTexts();
    assert.deepEqual(texts, ['note 1', 'note 2', 'note 3', 'note 4', 'note 5']);
  } finally {
    await server.stop();
  }
});

test('the server is killed and restarted: pages reconnect and messages arrive exactly once', async () => {
  const port = await freePort();
  const dataDir = tempDir();
  let server = await startServer({ port, dataDir });
  try {
    const a = await newUser(browser);
    const b = await newUser(browser);
    await joinRoom(a, server, 'outage', 'Alice');
    await joinRoom(b, server, 'outage', 'Bob');
    await say(a, 'before the crash');
    await message(b, 'before the crash').waitFor();

    await server.kill();
    await a.locator('#status', { hasText: 'reconnecting' }).waitFor();
    await b.locator('#status', { hasText: 'reconnecting' }).waitFor();
    // Written while the server is down: shown as pending, sent once it is back.
    await say(a, 'written during the outage');
    await a.locator('#messages li.pending', { hasText: 'during the outage' }).waitFor();
    await a.screenshot({ path: join(artifacts, 'reconnecting.png') });

    server = await startServer({ port, dataDir });
    await a.locator('#status', { hasText: 'online' }).waitFor({ timeout: 30_000 });
    await b.locator('#status', { hasText: 'online' }).waitFor({ timeout: 30_000 });
    await message(b, 'during the outage').waitFor();
    await message(a, 'during the outage').waitFor();
    await say(b, 'after the restart');
    await message(a, 'after the restart').waitFor();

    for (const page of [a, b]) {
      const texts = await page.locator('#messages li.msg .text').allInnerTexts();
      assert.deepEqual(texts, ['before the crash', 'written during the outage', 'after the restart'], 'each exactly once, in order');
      assert.equal(await page.locator('#messages li.pending').count(), 0);
    }
  } finally {
    await server.stop();
  }
});

test('links in chat open safely, a recent room joins in one click, a bad room name is told in red, and the app has an icon', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await newUser(browser);
    await joinRoom(ada, server, 'links', 'Ada');
    await say(ada, 'read https://example.org/docs. not javascript:alert(1) nor example.org');
    const line = message(ada, 'read');
    await line.waitFor();
    const links = line.locator('a');
    assert.equal(await links.count(), 1, 'one link: the https one');
    assert.equal(await links.getAttribute('href'), 'https://example.org/docs');
    assert.equal(await links.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await links.getAttribute('target'), '_blank');
    assert.match(await line.innerText(), /docs\. not javascript:alert\(1\) nor example\.org/, 'the rest stays text');

    // Back in the lobby, the room is a recent one, and one click joins it again.
    await ada.locator('#leave').click();
    await ada.locator('#lobby').waitFor();
    await ada.locator('.recent button', { hasText: 'links' }).click();
    await ada.locator('#status', { hasText: 'online' }).waitFor();
    await message(ada, 'read').waitFor();

    // A room name the server would refuse is told at once, in the error colour.
    await ada.locator('#leave').click();
    await ada.locator('#room').fill('bad room!');
    const problem = ada.locator('#lobby .field-error');
    await problem.waitFor();
    const [shown, bad] = await problem.evaluate((el) => {
      const probe = document.createElement('span');
      probe.style.color = 'var(--bad)';
      document.body.append(probe);
      const expected = getComputedStyle(probe).color;
      probe.remove();
      return [getComputedStyle(el).color, expected];
    });
    assert.equal(shown, bad);
    assert.equal(await ada.locator('#join').isDisabled(), true);

    // The icon is an SVG the server serves; a missing file is a 404, not the page.
    const [status, type, missing] = await ada.evaluate(async () => {
      const icon = await fetch(document.querySelector('link[rel=icon]').href);
      const ico = await fetch('/favicon.ico');
      return [icon.status, icon.headers.get('content-type'), ico.status];
    });
    assert.deepEqual([status, type, missing], [200, 'image/svg+xml', 404]);
    // And an app icon for a home screen, in the web app manifest.
    const manifest = await ada.evaluate(async () => {
      const r = await fetch(document.querySelector('link[rel=manifest]').href);
      return { type: r.headers.get('content-type'), body: await r.json() };
    });
    assert.match(manifest.type, /^application\/manifest\+json/);
    assert.equal(manifest.body.icons[0].src, '/favicon.svg');
    assert.equal(manifest.body.start_url, '/');
  } finally {
    await server.stop();
  }
});

test('an edit and a deletion are seen live, by a late joiner, and the author may still edit after a reload', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await newUser(browser);
    const grace = await newUser(browser);
    await joinRoom(ada, server, 'edits', 'Ada');
    await joinRoom(grace, server, 'edits', 'Grace');
    await say(ada, 'Release on Thursday');
    await say(ada, 'a typo I regret');
    await message(grace, 'a typo I regret').waitFor();

    // Ada edits her first message: Grace sees the new text, marked edited, in place.
    const first = ada.locator('#messages li.msg', { hasText: 'Release on Thursday' });
    await first.hover();
    await first.locator('button.edit').click();
    await ada.locator('#edit-input').fill('Release on Friday');
    await ada.locator('#edit-input').press('Enter');
    const edited = grace.locator('#messages li.msg', { hasText: 'Release on Friday' });
    await edited.locator('.edited').waitFor();
    assert.equal(await grace.locator('#messages li.msg', { hasText: 'Thursday' }).count(), 0);
    assert.equal(await grace.locator('#messages li.msg:not(.pending)').count(), 2, 'an edit is not a new line');
    // And deletes the second.
    const second = ada.locator('#messages li.msg', { hasText: 'a typo I regret' });
    await second.hover();
    await second.locator('button.delete').click();
    await grace.locator('#messages li.msg.deleted').waitFor();

    // A late joiner gets the same result from the history.
    const linus = await newUser(browser);
    await joinRoom(linus, server, 'edits', 'Linus');
    await linus.locator('#messages li.msg', { hasText: 'Release on Friday' }).locator('.edited').waitFor();
    await linus.locator('#messages li.msg.deleted').waitFor();
    assert.equal(await linus.locator('#messages li.msg', { hasText: 'Thursday' }).count(), 0);

    // Ada reloads: her message is still hers (marked, and she may edit it again).
    await ada.reload();
    await ada.locator('#status', { hasText: 'online' }).waitFor();
    const mine = ada.locator('#messages li.msg.mine', { hasText: 'Release on Friday' });
    await mine.waitFor();
    await mine.hover();
    await mine.locator('button.edit').click();
    await ada.locator('#edit-input').fill('Release on Monday');
    await ada.locator('#edit-input').press('Enter');
    await grace.locator('#messages li.msg', { hasText: 'Release on Monday' }).waitFor();
    await linus.locator('#messages li.msg', { hasText: 'Release on Monday' }).waitFor();
    await grace.screenshot({ path: join(artifacts, 'chat-edited.png') });
  } finally {
    await server.stop();
  }
});

test('while someone types the others see it, and it ends with their message', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await newUser(browser);
    const grace = await newUser(browser);
    await joinRoom(ada, server, 'typing', 'Ada');
    await joinRoom(grace, server, 'typing', 'Grace');
    await ada.locator('#peers li', { hasText: 'Grace' }).waitFor({ state: 'attached' });
    await grace.locator('#draft').pressSequentially('On my way', { delay: 20 });
    await ada.locator('#typing', { hasText: 'Grace is typing…' }).waitFor();
    assert.equal(await grace.locator('#typing').textContent(), '', 'not told about herself');
    await grace.locator('#draft').press('Enter');
    await message(ada, 'On my way').waitFor();
    assert.equal(await ada.locator('#typing').textContent(), '', 'her message ends it');
  } finally {
    await server.stop();
  }
});

test('the host is the host again after a server restart, even when another member is back first', async () => {
  const port = await freePort();
  const dataDir = tempDir();
  let server = await startServer({ port, dataDir });
  try {
    const ada = await newUser(browser);
    await joinRoom(ada, server, 'owned', 'Ada');
    await ada.locator('#go-live').waitFor();
    await say(ada, 'my room, my broadcast');
    await message(ada, 'my room, my broadcast').waitFor();
    const grace = await newUser(browser);
    await joinRoom(grace, server, 'owned', 'Grace');
    assert.equal(await grace.locator('#go-live').count(), 0, 'Grace is a member');

    // Ada's tab is closed; the server dies and comes back; Grace is back first and stands in.
    const context = ada.context();
    await ada.close();
    await server.kill();
    server = await startServer({ port, dataDir });
    await grace.locator('#status', { hasText: 'online' }).waitFor({ timeout: 30_000 });
    await grace.locator('#go-live').waitFor();
    // Ada opens the room again in the same browser: the room is hers, Grace hands it back.
    const back = await context.newPage();
    await back.goto(`${server.url}/r/owned`);
    await back.locator('#status', { hasText: 'online' }).waitFor();
    await back.locator('#go-live').waitFor();
    await grace.locator('#go-live').waitFor({ state: 'detached' });
  } finally {
    await server.stop();
  }
});

test('a hidden tab counts new messages in its title, and chimes for them when asked to', async () => {
  const server = await startServer({ port: await freePort(), dataDir: tempDir() });
  try {
    const ada = await newUser(browser);
    const grace = await newUser(browser);
    await joinRoom(ada, server, 'away', 'Ada');
    await joinRoom(grace, server, 'away', 'Grace');
    const hide = (hidden) => grace.evaluate((hidden) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    // The chime is off until asked for: a hidden tab only counts.
    await hide(true);
    await say(ada, 'anyone there?');
    await grace.waitForFunction(() => document.title.startsWith('(1) away'));
    assert.equal(await grace.locator('#sound').getAttribute('data-chimes'), '0');
    await hide(false);
    await grace.waitForFunction(() => document.title === 'away · Relaycast');
    // Turned on (and remembered): each new message while hidden chimes once.
    await grace.locator('#sound').click();
    assert.equal(await grace.evaluate(() => localStorage.getItem('relaycast.sound')), 'on');
    await hide(true);
    await say(ada, 'ping');
    await grace.locator('#sound[data-chimes="1"]').waitFor();
    await say(ada, 'ping again');
    await grace.locator('#sound[data-chimes="2"]').waitFor();
    await hide(false);
    await say(ada, 'while you look');
    await message(grace, 'while you look').waitFor();
    assert.equal(await grace.locator('#sound').getAttribute('data-chimes'), '2', 'no chime while the tab is seen');
  } finally {
    await server.stop();
  }
});
