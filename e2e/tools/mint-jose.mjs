// Mint a Relaycast token with `jose`, as a Node backend would.
//
//   node mint-jose.mjs ALG KEY_FILE KID CLAIMS_JSON
//
// ALG is EdDSA (KEY_FILE: an Ed25519 private key in PEM, from `relaycast keygen`) or HS256
// (KEY_FILE: the shared secret); KID is the key id, or - for none. Prints the token.
import { readFileSync } from 'node:fs';
import { SignJWT, importPKCS8 } from 'jose';

const [alg, keyFile, kid, claimsJson] = process.argv.slice(2);
const claims = JSON.parse(claimsJson);
const raw = readFileSync(keyFile);
const key = alg === 'HS256'
  ? new TextEncoder().encode(raw.toString('utf8').replace(/[\r\n]+$/, ''))
  : await importPKCS8(raw.toString('utf8'), 'EdDSA');
const header = kid === '-' ? { alg } : { alg, kid };
process.stdout.write(`${await new SignJWT(claims).setProtectedHeader(header).sign(key)}\n`);
