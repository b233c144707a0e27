"""Flask extensions, created unbound and attached to an app in create_app."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from points.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
