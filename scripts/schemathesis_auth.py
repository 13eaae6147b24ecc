"""Schemathesis auth for scripts/schemathesis: signs in the way a client does (CSRF token,
then login with it from the same cookie jar) and sends the access token as a bearer token.

Some operations end the session the token belongs to (logout, revoking one's own session,
policy changes); schemathesis then sees a 401 and calls `get` again, so the rest of the run
still reaches the operations instead of stopping at 401s.
"""

import http.cookiejar
import json
import os
import urllib.request

import schemathesis


def access_token(base: str, identifier: str, password: str) -> str:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(base + "/api/v1/auth/csrf-token", timeout=10) as r:
        csrf = json.load(r)["data"]["csrfToken"]
    req = urllib.request.Request(
        base + "/api/v1/auth/login",
        data=json.dumps({"identifier": identifier, "password": password}).encode(),
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf},
    )
    with opener.open(req, timeout=10) as r:
        return json.load(r)["data"]["auth"]["accessToken"]


@schemathesis.auth()
class SignIn:
    def get(self, case, ctx):
        return access_token(
            os.environ["GH_ST_BASE"], os.environ["GH_ST_IDENTIFIER"], os.environ["GH_ST_PASSWORD"]
        )

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


if __name__ == "__main__":
    print(access_token(os.environ["GH_ST_BASE"], os.environ["GH_ST_IDENTIFIER"], os.environ["GH_ST_PASSWORD"]))
