"""Sign a photo frame, TV app or script in with the device flow (RFC 8628), as a device would.

    python examples/device_login.py --issuer https://auth.example.org --client-id FRAME_ID \
        [--client-secret SECRET] [--scope "openid profile offline_access"] [--tokens tokens.json]

It reads the server's discovery document, asks for a device code, prints the code and the
link to open on a phone (also as JSON on the first line of stdout, for programs driving it),
then polls the token endpoint at the interval the server gives, five seconds slower after each
`slow_down`, until the user allows or denies or the code expires. The tokens go to --tokens
(created readable by the owner only), never to the terminal. Needs `requests`.
Exit status: 0 signed in, 2 denied, 3 expired, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import requests

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", default=None, help="only for a confidential client")
    parser.add_argument("--scope", default="openid profile offline_access")
    parser.add_argument("--tokens", default="device-tokens.json", help="where the tokens are written")
    args = parser.parse_args(argv)

    http = requests.Session()
    auth = (args.client_id, args.client_secret) if args.client_secret else None
    identify = {} if auth else {"client_id": args.client_id}
    meta = http.get(args.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()

    started = http.post(meta["device_authorization_endpoint"], data={"scope": args.scope, **identify},
                        auth=auth, timeout=10)
    if started.status_code != 200:
        print(f"device authorization refused: {started.text}", file=sys.stderr)
        return 1
    codes = started.json()
    print(json.dumps({"user_code": codes["user_code"], "verification_uri": codes["verification_uri"],
                      "verification_uri_complete": codes["verification_uri_complete"]}), flush=True)
    print(f"On your phone or computer, open {codes['verification_uri']} and enter {codes['user_code']}",
          file=sys.stderr, flush=True)

    interval = int(codes.get("interval", 5))
    deadline = time.monotonic() + int(codes["expires_in"])
    while time.monotonic() < deadline:
        time.sleep(interval)
        answer = http.post(meta["token_endpoint"], auth=auth, timeout=10,
                           data={"grant_type": GRANT, "device_code": codes["device_code"], **identify})
        body = answer.json()
        if answer.status_code == 200:
            descriptor = os.open(args.tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                json.dump(body, out)
            print(f"signed in; scope {body.get('scope', '')!r}; tokens written to {args.tokens}", file=sys.stderr)
            return 0
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        print(f"{error}: {body.get('error_description', '')}", file=sys.stderr)
        return {"access_denied": 2, "expired_token": 3}.get(error, 1)
    print("expired_token: the code expired before anyone allowed it", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
