"""Every hook spec of Steward Points, grouped by family; argument names are public API.

The core calls hooks with keyword arguments, one plugin at a time and only for plugins
enabled in the district concerned (see `points.plugins.call_each`), then orders the
results itself, so registration order never matters. `config` is always the calling
plugin's own configuration, resolved for the district (`points.plugins.PluginConfig`).
Documented hook by hook in docs/plugins.md.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("points")


# -- registration ------------------------------------------------------------------------


@hookspec
def register_activity_kinds():
    """Return a list of `ActivityKind`: kinds of service with a marshmallow details schema."""


@hookspec
def register_config_schemas():
    """Return a list of (plugin_name, marshmallow Schema class) pairs: unknown = RAISE,
    every field with a default, so that an empty configuration loads."""


@hookspec
def register_catalog_items(district, config):
    """Return a list of `CatalogItem` the district node offers for redemption."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the `points` command line (`cli` is a click group)."""


# -- earning -----------------------------------------------------------------------------


@hookspec
def award_points(record, volunteer, config, history):
    """Return a list of `Award` proposed for an approved service record, or None."""


@hookspec
def award_bonuses(record, volunteer, awards, config, history):
    """Return a list of extra `Award` on top of the base `awards` of a record, or None."""


@hookspec
def limit_awards(record, volunteer, awards, config, history):
    """Return a list of `Limit` (ceilings, each with its reason) on the proposed awards,
    or None; the core applies the lowest ceiling of every plugin."""


@hookspec
def review_record(record, volunteer, awards, config):
    """Return a `Decision` (allowed: approve now; not allowed: queue for the office) or
    None; any queue wins, and with no answer at all the record is queued."""


@hookspec
def expiry_for(lot, config):
    """Return when a newly earned `LotInfo` expires (an aware datetime) or None for never;
    the core takes the earliest answer."""


@hookspec
def star_level_for(minutes, config):
    """Return the star level (an int, 0 for none) for `minutes` of service, or None; the
    core takes the highest answer."""


# -- spending ----------------------------------------------------------------------------


@hookspec
def check_redemption(volunteer, item, config, usage):
    """Return None or a `Decision` on redeeming `item`; any deny wins, with its reason."""


@hookspec
def check_transfer(giver, receiver, points, relation, config, usage):
    """Return None or a `Decision` on giving `points`; any deny wins, and any allowed
    decision with `needs_approval` sends the gift to the office."""


# -- notifications -----------------------------------------------------------------------


@hookspec
def entry_posted(entry):
    """Called after commit for each entry the service layer posted; the return is ignored."""


# -- activities --------------------------------------------------------------------------


@hookspec
def activity_fields(district, config):
    """Return fields a plugin adds to an activity of `district` (a `DistrictInfo`): a
    dict of marshmallow fields by name, or a marshmallow Schema class, or None. The
    values are checked when an activity is posted or edited and stored in its `extra`;
    a field's metadata may carry label_zh and label_en for the pages."""


@hookspec
def attendance_closed(activity, attended, config):
    """Called after an activity is closed and committed, with the `ActivityInfo` and the
    ids of the volunteers who checked in (a tuple); the return is ignored. A plugin that
    wants to give something (a bonus for a full attendance month) records it through
    `points.service.record_service` in its own unit of work."""
