// Token mode, as a deployment runs it: the app's backend (here: this test, minting with jose
// as a Node backend would) puts a token in the room link's fragment, and serves fresh ones at
// the token URL the server announces. A page with a token joins under the token's name and
// sees only the controls its rights allow; without one, or with one for another room, it is
// told so plainly; a short-lived token is renewed while chatting; a member removed through
// the backend API sees why; an author deletes a message of theirs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, importPKCS8 } from 'jose';
import { artifacts, freePort, tempDir, startServer, launchBrowser, newUser, say, message } from '../lib/harness.mjs';

const API_KEY = 'e2e-backend-api-key-0123456789abcdef';
const TOKEN_URL = '/app/token';
const EVERYTHING = ['join', 'history', 'publish', 'signal', 'upload', 'download', 'watch'];
let browser;
let server;
let signingKey;

before(async () => {
  const dir = tempDir();
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(join(dir, 'app.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'api-key'), API_KEY);
  signingKey = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }), 'EdDSA');
  server = await startServer({ port: await freePort(), dataDir: dir, args: ['--auth', 'token',
    '--auth-public-key', `app-1=${join(dir, 'app.pub.pem')}`, '--api-key-file', join(dir, 'api-key'),
    '--app-token-url', TOKEN_URL, '--token-expiry-notice', '12s', '--token-expiry-grace', '2s'] });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** What the app's backend does: a token for this user with these rights, valid `ttl` s. */
function mint(sub, name, rooms, ttl = 600) {
  return new SignJWT({ name, rooms }).setProtectedHeader({ alg: 'EdDSA', kid: 'app-1' }).setSubject(sub)
    .setAudience('relaycast').setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) + ttl).sign(signingKey);
}

/** Open the room link the app hands out: the token rides in the fragment. */
async function openWithToken(page, room, token) {
  await page.goto(`${server.url}/r/${room}#token=${token}`);
}

async function online(page) {
  await page.locator('#status', { hasText: 'online' }).waitFor();
}

test('a page with a token joins under its name and sees only the controls its rights allow', async () => {
  const ada = await newUser(browser);
  await openWithToken(ada, 'standup', await mint('u-ada', 'Ada Lovelace', { standup: EVERYTHING }));
  await online(ada);
  await ada.locator('#peers li.me', { hasText: 'Ada Lovelace (you)' }).waitFor({ state: 'attached' });
  assert.equal(await ada.evaluate(() => location.hash), '', 'the token leaves the address bar');
  assert.equal(await ada.locator('#file-input').count(), 1);
  assert.equal(await ada.locator('#call-join').count(), 1);
  assert.equal(await ada.locator('#go-live').count(), 0, 'no broadcast right: no go-live button');

  const bo = await newUser(browser);
  await openWithToken(bo, 'standup', await mint('u-bo', 'Bo', { standup: ['join', 'history'] }));
  await online(bo);
  await bo.locator('#read-only').waitFor();
  assert.equal(await bo.locator('#draft').count(), 0, 'no publish right: no compose box');
  assert.equal(await bo.locator('#file-input').count(), 0, 'no upload right: no file button');
  await bo.locator('#no-call').waitFor();
  assert.equal(await bo.locator('#watch').count(), 0, 'no watch right: no watch button');
  await say(ada, 'Welcome, Bo');
  await message(bo, 'Welcome, Bo').waitFor();
  await ada.locator('#peers li', { hasText: 'Bo' }).waitFor({ state: 'attached' });
  await bo.screenshot({ path: join(artifacts, 'token-read-only.png') });
  // Ada deletes her own message: it stays in place for everyone, without its text.
  assert.equal(await bo.locator('#messages button.delete').count(), 0, 'not his message, no moderate right');
  await ada.locator('#messages li.msg', { hasText: 'Welcome, Bo' }).locator('button.delete').click();
  await bo.locator('#messages li.msg.deleted', { hasText: 'message deleted' }).waitFor();
  assert.equal(await bo.locator('#messages li.msg', { hasText: 'Welcome, Bo' }).count(), 0);
  await ada.context().close();
  await bo.context().close();
});

test('without a token, or with one for another room, the page says so plainly', async () => {
  const nobody = await newUser(browser);
  await nobody.goto(`${server.url}/r/standup`);
  await nobody.locator('#name').fill('Mallory');
  await nobody.locator('#join').click();
  await nobody.locator('#problem', { hasText: 'You need an invitation' }).waitFor();
  await nobody.locator('#status', { hasText: 'offline' }).waitFor();

  const elsewhere = await newUser(browser);
  await openWithToken(elsewhere, 'standup', await mint('u-eve', 'Eve', { 'other-room': EVERYTHING }));
  await elsewhere.locator('#problem', { hasText: 'Your invitation is for another room' }).waitFor();
  await elsewhere.screenshot({ path: join(artifacts, 'token-refused.png') });
  await nobody.context().close();
  await elsewhere.context().close();
});

test('a short-lived token is renewed from the token URL while chatting, and nothing is lost', async () => {
  const renewals = [];
  const ada = await newUser(browser);
  // The deployment's token URL, answered by the app's backend with the page's cookies.
  await ada.context().route(`**${TOKEN_URL}?room=*`, async (route) => {
    renewals.push(new URL(route.request().url()).searchParams.get('room'));
    await route.fulfill({ contentType: 'application/json',
      body: JSON.stringify({ token: await mint('u-ada', 'Ada', { chat: EVERYTHING }) }) });
  });
  // What crosses Ada's sockets: the renewal must ride the open one.
  const sockets = [];
  ada.on('websocket', (ws) => {
    const frames = { sent: [], received: [] };
    sockets.push(frames);
    ws.on('framesent', (f) => frames.sent.push(JSON.parse(f.payload).type));
    ws.on('framereceived', (f) => frames.received.push(JSON.parse(f.payload).type));
  });
  const watcher = await newUser(browser);
  await openWithToken(watcher, 'chat', await mint('u-w', 'Watcher', { chat: EVERYTHING }));
  const started = Date.now();
  await openWithToken(ada, 'chat', await mint('u-ada', 'Ada', { chat: EVERYTHING }, 15));
  await online(ada);
  // The server asks for a new token 12 s before the first one's end; the app fetches one.
  for (let i = 1; Date.now() - started < 20_000; i++) {
    await say(ada, `line ${i}`);
    await message(watcher, `line ${i}`).waitFor();
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.deepEqual(renewals.slice(0, 1), ['chat'], 'renewed from the token URL, for this room');
  assert.equal(sockets.length, 1, 'one socket all along: no reconnect');
  assert.ok(sockets[0].received.includes('token_expiring'), sockets[0].received.join());
  assert.ok(sockets[0].sent.includes('refresh') && sockets[0].received.includes('token_accepted'));
  // Past the first token's expiry and grace, the same connection still carries messages.
  await online(ada);
  await say(ada, 'still here');
  await message(watcher, 'still here').waitFor();
  assert.equal(await ada.locator('#messages li.pending').count(), 0, 'nothing left unsent');
  const texts = await watcher.locator('#messages li.msg .text').allInnerTexts();
  const lines = texts.filter((t) => t.startsWith('line ')).map((t) => Number(t.slice(5)));
  assert.deepEqual(lines, lines.map((_, i) => i + 1), 'every line, once, in order');
  await ada.context().close();
  await watcher.context().close();
});

test('a member removed through the backend API sees why', async () => {
  const ada = await newUser(browser);
  await openWithToken(ada, 'townhall', await mint('u-ada', 'Ada', { townhall: EVERYTHING }));
  const troll = await newUser(browser);
  await openWithToken(troll, 'townhall', await mint('u-troll', 'Troll', { townhall: EVERYTHING }));
  await online(troll);
  await ada.locator('#peers li', { hasText: 'Troll' }).waitFor({ state: 'attached' });
  const reply = await fetch(`${server.url}/api/rooms/townhall/members/u-troll?reason=${encodeURIComponent('Please keep it civil')}`,
    { method: 'DELETE', headers: { authorization: `Bearer ${API_KEY}` } });
  assert.equal(reply.status, 200);
  assert.equal((await reply.json()).connections_removed, 1);
  await troll.locator('#problem', { hasText: 'You were removed from this room: Please keep it civil' }).waitFor();
  await ada.locator('#peers li', { hasText: 'Troll' }).waitFor({ state: 'detached' });
  await troll.screenshot({ path: join(artifacts, 'token-removed.png') });
  await ada.context().close();
  await troll.context().close();
});
