"""HTML forms; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

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


class ProfileForm(FlaskForm):
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
