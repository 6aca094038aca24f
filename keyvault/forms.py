"""HTML forms for the key pages; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from .service import MAX_EXPIRY_DAYS, MAX_GRACE_SECONDS


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class MintKeyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    scopes = CheckboxesField("Scopes", choices=[])
    expires_in_days = IntegerField("Expires in (days, empty: never)",
                                   validators=[Optional(), NumberRange(1, MAX_EXPIRY_DAYS)])
    cidrs = TextAreaField("Allowed address ranges (one per line, empty: any)", validators=[Length(max=2000)])
    user = StringField("Owner (username)", validators=[Optional(), Length(max=150)])


class RotateKeyForm(FlaskForm):
    grace_seconds = IntegerField("Old secret keeps working for (seconds)", default=0,
                                 validators=[Optional(), NumberRange(0, MAX_GRACE_SECONDS)])
