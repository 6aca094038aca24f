"""The names and lifetimes of this server's browser cookies (prefixed `__Host-`/`__Secure-` on
https by `Settings.cookie_name`)."""

from __future__ import annotations

from datetime import timedelta

SESSION_COOKIE = "authserver_session"  # the SSO session
PENDING_LOGIN_COOKIE = "authserver_login"  # a login waiting for its second step
PENDING_LOGIN_LIFETIME = timedelta(minutes=5)
PUSHED_REQUEST_COOKIE = "authserver_par"  # the browser that opened a pushed authorization request
PASSKEY_LOGIN_COOKIE = "authserver_passkey"  # a passwordless sign-in waiting for the authenticator
