"""Mint a Relaycast token with PyJWT, as a Python backend would.

    python3 mint_pyjwt.py ALG KEY_FILE KID CLAIMS_JSON

ALG is EdDSA (KEY_FILE: an Ed25519 private key in PEM, from `relaycast keygen`) or HS256
(KEY_FILE: the shared secret); KID is the key id, or - for none. Prints the token.
"""
import json
import sys

import jwt  # PyJWT (pip install 'pyjwt[crypto]')


def main() -> None:
    alg, key_file, kid, claims = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    with open(key_file, "rb") as f:
        key = f.read()
    if alg == "HS256":
        key = key.rstrip(b"\r\n")
    headers = {} if kid == "-" else {"kid": kid}
    print(jwt.encode(claims, key, algorithm=alg, headers=headers))


if __name__ == "__main__":
    main()
