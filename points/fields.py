"""Marshmallow fields shared by the API's schemas and the plugins' config schemas."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import fields


class StrictBoolean(fields.Boolean):
    """A boolean that is JSON `true` or `false` only.

    marshmallow's Boolean also reads "no", "off", 0 and "1"; a typo such as
    `"enabled": "no"` would then switch something off (or on) without a word.
    """

    default_error_messages: ClassVar[dict[str, str]] = {"invalid": "Must be true or false."}

    def _deserialize(self, value: Any, attr, data, **kwargs) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")
