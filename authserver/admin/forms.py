"""Admin console forms; FlaskForm carries and checks the CSRF token (the audit filter is a GET: no token)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ..accounts.forms import PRINTABLE, ProfileClaimsFields, email_field
from ..oidc.clients import DEFAULT_GRANTS, DEFAULT_SCOPE, GRANT_TYPES
from ..oidc.signing import SUPPORTED_ALGS

TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")
GROUPS_HINT = "Separate names with commas or spaces, e.g. photos, family."


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class UserFields(FlaskForm):
    name = StringField("Display name", validators=[Length(max=200), PRINTABLE])
    email = email_field()
    groups = StringField("Groups", validators=[Length(max=4000)])
    is_admin = BooleanField("Administrator (may use this console)")


class CreateUserForm(UserFields):
    username = StringField("Username", validators=[DataRequired("Choose a username."), Length(max=150)])
    invite = BooleanField("Send an invitation by email: the user chooses a password")
    password = PasswordField(
        "Password",
        validators=[
            Optional(),
            Length(min=8, max=1024, message="A password has 8 to 1024 characters."),
        ],
    )


class EditUserForm(UserFields, ProfileClaimsFields):
    email_verified = BooleanField("Email address verified (ID tokens and userinfo say email_verified: true)")


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """A UTC time typed in a filter; a bare date means its start (or, for "until", its end)."""
    for fmt in TIME_FORMATS:
        try:
            moment = datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end_of_day:
            moment += timedelta(days=1)
        return moment
    raise ValueError(f'"{text[:40]}" is not a time; write 2026-05-01 or 2026-05-01T14:30 (UTC).')


class TimeField(StringField):
    """A UTC time as text (a datetime-local input in the page); `.moment` holds the parsed value."""

    def __init__(self, *args, end_of_day: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.end_of_day = end_of_day
        self.moment = None

    def pre_validate(self, form):
        self.moment = None
        if self.data:
            try:
                self.moment = parse_time(self.data, end_of_day=self.end_of_day)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a search (GET): it changes nothing

    actor = StringField("Actor", validators=[Length(max=200)])
    action = StringField("Action", validators=[Length(max=64)])
    target = StringField("Target", validators=[Length(max=200)])
    since = TimeField("From", validators=[Length(max=40)])
    until = TimeField("Until", validators=[Length(max=40)], end_of_day=True)
    before = IntegerField(validators=[Optional(), NumberRange(min=1)])


class ClientForm(FlaskForm):
    """A new OAuth/OIDC client; the registry checks the combination (ClientError names the fix)."""

    name = StringField(
        "Name",
        validators=[
            DataRequired("Give the client a name people recognise on the consent page."),
            Length(max=200),
            PRINTABLE,
        ],
    )
    redirect_uris = TextAreaField("Redirect URIs", validators=[Length(max=20000)])
    token_endpoint_auth_method = SelectField(
        "How the client authenticates",
        choices=[
            SelectChoice("client_secret_basic", "Secret in an Authorization header (client_secret_basic)"),
            SelectChoice("client_secret_post", "Secret in the request body (client_secret_post)"),
            SelectChoice("private_key_jwt", "Signed assertion with its own key (private_key_jwt)"),
            SelectChoice("none", "None: a public app (mobile, single-page) with PKCE"),
        ],
    )
    grant_types = CheckboxesField("Grants", choices=list(GRANT_TYPES), default=list(DEFAULT_GRANTS))
    scope = StringField("Scopes it may ask for", default=DEFAULT_SCOPE, validators=[Length(max=1000)])
    is_trusted = BooleanField("Trusted app (skips the consent page)")
    is_first_party = BooleanField(
        "First-party: this server's own app (its tokens work on this server's API; "
        "may hold the admin scope; no consent page)"
    )
    can_introspect = BooleanField("Resource server: may introspect tokens meant for it, and API keys")
    no_pkce = BooleanField("Exempt from PKCE (confidential apps that cannot send it)")
    require_par = BooleanField("Require pushed authorization requests (PAR, RFC 9126)")
    require_dpop = BooleanField("Require DPoP: tokens bound to the app's key (RFC 9449; for mobile and desktop apps)")
    is_broker = BooleanField("Broker: this server runs the OAuth exchange for it (thin clients)")
    allow_missing_state = BooleanField("Allow a missing state on broker callbacks (old app versions)")
    extra_claims = TextAreaField("Extra claims", validators=[Length(max=4000)])
    id_token_signed_response_alg = SelectField("ID token algorithm", choices=list(SUPPORTED_ALGS))
    access_token_format = SelectField(
        "Access tokens",
        choices=[SelectChoice("opaque", "Opaque (introspect them)"), SelectChoice("jwt", "JWT (RFC 9068)")],
    )
    jwks = TextAreaField("Public keys (JWKS, for private_key_jwt)", validators=[Length(max=20000)])

    def jwks_value(self) -> dict | None:
        """The JWKS as a dict, or None; a field error when it is not a JSON object."""
        text = (self.jwks.data or "").strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            value = None
        if not isinstance(value, dict):
            self.jwks.errors = ['Paste a JSON object like {"keys": [...]}.']
            return None
        return value
