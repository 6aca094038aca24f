"""Admin console forms; FlaskForm carries and checks the CSRF token (the audit filter is a GET: no token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    StringField,
    ValidationError,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp

from ..accounts.forms import EMAIL

TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")
GROUPS_HINT = "Separate names with commas or spaces, e.g. photos, family."


class UserFields(FlaskForm):
    name = StringField("Display name", validators=[Length(max=200)])
    email = StringField("Email", validators=[Optional(), Regexp(EMAIL, message="Enter an email address like name@example.org."),
                                             Length(max=320)])
    groups = StringField("Groups", validators=[Length(max=4000)])
    is_admin = BooleanField("Administrator (may use this console)")


class CreateUserForm(UserFields):
    username = StringField("Username", validators=[DataRequired("Choose a username."), Length(max=150)])
    password = PasswordField("Password", validators=[
        Optional(), Length(min=8, max=1024, message="A password has 8 to 1024 characters."),
    ])


class EditUserForm(UserFields):
    pass


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
