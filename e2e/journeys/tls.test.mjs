// Why TLS: browsers give the camera only to secure contexts. On a name that is not localhost,
// plain http gets no camera (and the app says why), while https with the server's
// self-signed certificate carries a whole call. relaycast.test is mapped to 127.0.0.1 in
// Chromium, which trusts the certificate by its public key's hash, as a person would after
// checking the fingerprint the server printed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, tempDir, startServer, launchBrowser, newUser, joinRoom, decodesFrom, needsNetns,
  artifacts, joinCall } from '../lib/harness.mjs';

const NAME = 'relaycast.test';
let browser;
let secure;
let plain;

before(async () => {
  if (needsNetns) return;
  const dataDir = tempDir();
  secure = await startServer({ port: await freePort(), dataDir, host: NAME,
    args: ['--tls-self-signed', '--tls-name', NAME] });
  plain = await startServer({ port: await freePort(), dataDir: tempDir(), host: NAME });
  // What a person checks once: the certificate the server made, by its public key.
  const cert = new X509Certificate(readFileSync(join(dataDir, 'tls', 'self-signed.crt')));
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  assert.ok(cert.subjectAltName.includes(`DNS:${NAME}`), cert.subjectAltName);
  browser = await launchBrowser([`--host-resolver-rules=MAP ${NAME} 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${spki}`]);
});
after(async () => {
  await browser?.close();
  await secure?.stop();
  await plain?.stop();
});

test('over plain http on a real name there is no camera, and the app says why', { skip: needsNetns }, async () => {
  const page = await newUser(browser);
  await joinRoom(page, plain, 'insecure', 'Ada');
  assert.equal(await page.evaluate(() => window.isSecureContext), false);
  assert.equal(await page.evaluate(() => typeof navigator.mediaDevices), 'undefined');
  await page.locator('#call-join').click();
  await page.locator('#prejoin-problem', { hasText: 'need a secure connection' }).waitFor();
  await page.context().close();
});

test('over https with the self-signed certificate, two pages call each other', { skip: needsNetns }, async () => {
  const a = await newUser(browser);
  const b = await newUser(browser);
  await joinRoom(a, secure, 'secure', 'Ada');
  await joinRoom(b, secure, 'secure', 'Grace');
  assert.equal(await a.evaluate(() => window.isSecureContext), true);
  assert.equal(await a.evaluate(() => location.origin), secure.url);
  await joinCall(a);
  await joinCall(b);
  await decodesFrom(a, 1);
  await decodesFrom(b, 1);
  await a.screenshot({ path: join(artifacts, 'tls-call.png') });
  await a.context().close();
  await b.context().close();
});
