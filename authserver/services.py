"""build_services(): the wired-up services of one app."""

from __future__ import annotations

from urllib.parse import urlsplit

from keyvault.introspection import KeyTokenKind
from keyvault.service import KeyService
from keyvault.strategies import ApiKeyStrategy

from .accounts.login import LoginService
from .accounts.service import (
    SESSION_COOKIE,
    AccountService,
    SessionCookieStrategy,
    SessionService,
)
from .admin.service import AdminService
from .audit.service import AuditLog
from .broker.service import BrokerService
from .clock import Clock
from .crypto import PasswordHasher
from .forwardauth.service import ForwardAuthService
from .identity import IdentityResolver
from .mail.links import LinkStore
from .mail.outbox import Outbox
from .mail.service import MailService
from .mail.transport import SmtpTransport
from .oidc.server import OidcProvider
from .oidc.tokens import BearerTokenStrategy
from .passkeys.service import PasskeyService
from .sealing import SealedValues, keyring_sealer
from .settings import Settings, check_smtp_url
from .throttle import Throttle
from .totp.service import TotpService


class Services:
    """One app's services; views reach them through `web.services()`."""

    def __init__(self, settings: Settings, clock: Clock):
        self.settings = settings
        self.clock = clock
        self.passwords = PasswordHasher(
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
            settings.argon2_parallelism,
            settings.password_hashes_at_once,
        )
        self.sealer = keyring_sealer(settings.master_keys, settings.master_key_file)
        self.audit = AuditLog(clock)
        self.throttle = Throttle.for_settings(settings.redis_url, now=lambda: clock.now().timestamp())
        self.accounts = AccountService(self.passwords, self.audit, clock)
        self.sessions = SessionService(clock, settings.session_idle_seconds, settings.session_absolute_seconds)
        self.identity = IdentityResolver([SessionCookieStrategy(
            self.sessions, settings.cookie_name(SESSION_COOKIE, shared_domain=True))])
        self.oidc = OidcProvider(settings, clock, self.sealer, self.audit, self.sessions, self.accounts,
                                 self.throttle)
        self.signing = self.oidc.signing
        # Credentials sent on purpose come before the ambient cookie: a bad one is refused, never
        # passed over for the cookie (keys first, then bearer tokens, then the session).
        self.identity.add(BearerTokenStrategy(self.oidc.tokens, self.oidc.dpop, self.oidc.base), first=True)
        self.keys = KeyService(settings.pepper, clock, self.audit, self.throttle, settings.key_scopes)
        # First in the chain: an explicit key header is never overridden by an ambient cookie.
        self.identity.add(ApiKeyStrategy(self.keys, settings.key_headers), first=True)
        # Services introspect `pkid-…:secret` at the same RFC 7662 endpoint as OAuth tokens.
        self.oidc.token_kinds.append(KeyTokenKind(self.keys))
        self.passkeys = PasskeyService(settings.issuer, urlsplit(settings.issuer).hostname or "authserver",
                                       self.throttle, self.audit, clock)
        self.totp = TotpService(
            self.sealer, settings.pepper, self.throttle, self.audit, clock,
            issuer_label=urlsplit(settings.issuer).hostname or "authserver", required=settings.totp_required,
            other_factor=self.passkeys.has_passkey,
        )
        self.logins = LoginService(self.accounts, self.totp, self.passkeys, self.throttle, self.audit, clock)
        # Every value sealed under the master key, for `master-key rotate`; capabilities add theirs.
        self.sealed = SealedValues()
        self.sealed.register("totp_secrets", *self.totp.sealed_columns())
        self.sealed.register("signing_keys", *self.signing.sealed_columns())
        self.sealed.register("client_secrets", *self.oidc.clients.sealed_columns())
        self.forward_auth = ForwardAuthService(
            settings.forward_auth_rules, settings.trusted_proxies, settings.forward_auth_domains, settings.issuer
        )
        self.broker = BrokerService(self.oidc, self.sealer, settings.pepper, self.audit, self.throttle, clock)
        self.sealed.register("broker_verifiers", *self.broker.sealed_columns())
        self.links = LinkStore(settings.pepper, clock)
        outbox = None
        if settings.mail_enabled:
            transport = SmtpTransport(check_smtp_url(settings.smtp_url), timeout=settings.smtp_timeout_seconds,
                                      ca_file=settings.smtp_ca_file)
            outbox = Outbox(transport, settings.mail_from, self.sealer, clock)
            self.sealed.register("mail_outbox", *outbox.sealed_columns())
        self.mail = MailService(settings, outbox, self.links, self.accounts, self.sessions, self.audit,
                                self.throttle, clock)
        if outbox is not None:
            self.totp.on_factor_change(self.mail.factor_changed)
            self.passkeys.on_factor_change(self.mail.passkey_changed)
            self.keys.on_mint(self.mail.key_minted)
        self.admin = AdminService(self.accounts, self.sessions, self.totp, self.audit, clock, self.signing,
                                  self.oidc.tokens, self.mail, self.passkeys)


def build_services(settings: Settings, clock: Clock) -> Services:
    return Services(settings, clock)
