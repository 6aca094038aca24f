"""Passkeys (WebAuthn): registration, a second factor after the password, passwordless login
(their pages are the accounts package's: accounts/passkey_views.py)."""
