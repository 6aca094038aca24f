"""HTML forms; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

from .service import PROFILE_CLAIMS

# Deliberately loose: one "@" with something either side; the address is the user's to get right.
EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"
# Names are shown on pages and put in tokens: no control characters (PostgreSQL refuses NUL anyway).
PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", message="Remove the control characters.")


def email_field() -> StringField:
    """An optional email address: one "@" with something either side, at most 320 characters."""
    return StringField("Email", validators=[
        Optional(), Regexp(EMAIL, message="Enter an email address like name@example.org."), Length(max=320)])


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter your username."), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1024)])
    next = HiddenField()


class PostOnlyForm(FlaskForm):
    """A form with nothing but its CSRF token (logout, revoke buttons)."""


class ProfileClaimsFields(FlaskForm):
    """OpenID Connect's standard profile claims, all optional; the accounts service checks them."""

    given_name = StringField("Given name", validators=[Length(max=200), PRINTABLE])
    family_name = StringField("Family name", validators=[Length(max=200), PRINTABLE])
    nickname = StringField("Nickname", validators=[Length(max=200), PRINTABLE])
    picture = StringField("Picture (address of an image)", validators=[Length(max=2000)])
    website = StringField("Website", validators=[Length(max=2000)])
    locale = StringField("Language (e.g. en, fr-CA)", validators=[Length(max=35)])
    zoneinfo = StringField("Time zone (e.g. Europe/Paris)", validators=[Length(max=64)])

    def claims(self) -> dict[str, str]:
        return {name: getattr(self, name).data or "" for name in PROFILE_CLAIMS}

    def fill(self, user) -> None:
        for name in PROFILE_CLAIMS:
            getattr(self, name).data = (user.profile or {}).get(name, "")


class ProfileForm(ProfileClaimsFields):
    name = StringField("Name", validators=[Length(max=200), PRINTABLE])
    email = email_field()
    # Needed only to change the email address (ASVS 7.5.1): the view checks it then.
    email_current_password = PasswordField("Current password (to change the email)", validators=[Length(max=1024)])


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired("Enter your current password."), Length(max=1024)]
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired("Choose a new password."),
            Length(min=8, max=1024, message="A password has 8 to 1024 characters."),
        ],
    )
    confirm_password = PasswordField(
        "New password again",
        validators=[
            DataRequired("Type the new password again."),
            EqualTo("new_password", "The two new passwords differ; type the same one twice."),
        ],
    )


class ConfirmForm(FlaskForm):
    """A destructive action: the box must be ticked (works without JavaScript)."""

    confirm = BooleanField("Yes, I am sure", validators=[DataRequired("Tick the box to confirm.")])
