"""Helpers the tests import: plain functions and classes, no fixtures (those live in the conftests).

- settings: `make_settings`, the app's settings for a test (cheap hashing, fresh keys)
- database: the schema by migration, emptying tables, counting SQL statements
- servers: the checkout's `authserver` command, real server processes, in-thread live servers,
  throwaway PostgreSQL clusters, free ports
- factories: users, keys, clients, TOTP enrolment, logins and credentials with sane defaults
- csrf: the CSRF token of a server-rendered form
- html: reading server-rendered pages (field errors, values shown once, form actions), the HTML login
- oidc: PKCE, the authorize/consent round trip, token exchange, ID-token checks
- broker: the mobile-app broker's live server, a mobile app, the system browser's sign-in
- browser: headless Chromium profiles with screenshots and markup checks
- receiver: a relying party's back-channel logout endpoint
- proxies: real nginx and Caddy in front of the server, an echoing upstream
- logs: what the JSON log handler captured
"""
