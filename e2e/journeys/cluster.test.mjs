// Several nodes on one Redis: two pages on two different nodes chat, see each other, and call
// each other peer to peer (the signaling crosses nodes), each decoding the other's video.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, freePort, tempDir, startServer, startRedis, launchBrowser, newUser, joinRoom, say, message, openTab,
  peerNames, until, decodesFrom, needsNetns, joinCall } from '../lib/harness.mjs';

let browser;
let redis;
before(async () => { browser = await launchBrowser(); redis = await startRedis(); });
after(async () => { await browser?.close(); await redis?.stop(); });

async function node(id) {
  return startServer({ port: await freePort(), dataDir: tempDir(),
    args: ['--redis', redis.url, '--node-id', id, '--memory', '--no-media', '--node-ttl', '3s'] });
}

test('two pages on two nodes chat, see each other and share the history', async () => {
  const [a, b] = [await node('a'), await node('b')];
  try {
    const ada = await newUser(browser);
    const grace = await newUser(browser);
    await joinRoom(ada, a, 'across', 'Ada');
    await say(ada, 'sent through node a');
    await message(ada, 'sent through node a').waitFor();
    await joinRoom(grace, b, 'across', 'Grace');
    // The history came from the shared log; presence from the other node.
    await message(grace, 'sent through node a').waitFor();
    await until('each sees the other', async () =>
      (await peerNames(ada)).some((n) => n.includes('Grace')) && (await peerNames(grace)).some((n) => n.includes('Ada')));
    await say(grace, 'and back through node b');
    await message(ada, 'and back through node b').waitFor();
    await grace.screenshot({ path: join(artifacts, 'cluster-chat.png') });
    // Grace's node goes away; Ada sees her leave once her node's heartbeat lapses.
    await b.kill();
    await until('grace left', async () => !(await peerNames(ada)).some((n) => n.includes('Grace')), 30_000);
    assert.ok(true);
  } finally {
    await a.stop();
    await b.stop().catch(() => {});
  }
});

test('a call between pages on two nodes: each decodes the other\'s video', { skip: needsNetns }, async () => {
  const [a, b] = [await node('a'), await node('b')];
  try {
    const ada = await newUser(browser);
    const grace = await newUser(browser);
    await joinRoom(ada, a, 'call-across', 'Ada');
    await joinRoom(grace, b, 'call-across', 'Grace');
    await joinCall(ada);
    await joinCall(grace);
    await decodesFrom(ada, 1);
    await decodesFrom(grace, 1);
    await openTab(ada, 'people');
    await openTab(grace, 'people');
    await ada.locator('#dm-input').fill('over the data channel, signaled across nodes');
    await ada.locator('#dm-send').click();
    await grace.locator('#dms li', { hasText: 'signaled across nodes' }).waitFor();
    await ada.screenshot({ path: join(artifacts, 'cluster-call.png') });
  } finally {
    await a.stop();
    await b.stop();
  }
});
