"""build_services(): the wired-up services of one app."""

from __future__ import annotations

from .accounts.service import AccountService, SessionCookieStrategy, SessionService
from .audit.service import AuditLog
from .clock import Clock
from .crypto import PasswordHasher, SecretSealer
from .forwardauth.service import ForwardAuthService
from .identity import IdentityResolver
from .settings import Settings
from .throttle import Throttle


class Services:
    """One app's services; views reach them through `web.services()`."""

    def __init__(self, settings: Settings, clock: Clock):
        self.settings = settings
        self.clock = clock
        self.passwords = PasswordHasher(
            settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        )
        self.sealer = SecretSealer(settings.master_keys)
        self.audit = AuditLog(clock)
        self.throttle = Throttle(settings.redis_url)
        self.accounts = AccountService(self.passwords, self.audit, clock)
        self.sessions = SessionService(clock, settings.session_idle_seconds, settings.session_absolute_seconds)
        self.identity = IdentityResolver([SessionCookieStrategy(self.sessions)])
        self.forward_auth = ForwardAuthService(
            settings.forward_auth_rules, settings.trusted_proxies, settings.forward_auth_domains, settings.issuer
        )


def build_services(settings: Settings, clock: Clock) -> Services:
    return Services(settings, clock)
