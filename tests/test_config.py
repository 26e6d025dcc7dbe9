"""matterport's settings: the ones accepted but not used are listed and announced; "crop" is
refused when the config is made, not deep inside a run."""
from __future__ import annotations

import logging

import pytest

from mrcnn.config import IGNORED_SETTINGS, RESIZE_MODES, CocoConfig, Config


def test_ignored_settings_are_named_in_the_docstring_and_exist_on_config():
    for name in IGNORED_SETTINGS:
        assert hasattr(Config, name), name
    assert "IGNORED_SETTINGS" in __import__("mrcnn.config").config.__doc__


def test_changing_an_ignored_setting_warns_once_per_config(caplog):
    class Custom(CocoConfig):
        USE_RPN_ROIS = False

    with caplog.at_level(logging.WARNING, logger="mrcnn.config"):
        CocoConfig()
        assert not caplog.records
        Custom()
    assert [r.getMessage().split(" is set")[0] for r in caplog.records] == ["USE_RPN_ROIS"]


def test_crop_is_refused_with_the_modes_that_work():
    class Cropping(Config):
        IMAGE_RESIZE_MODE = "crop"

    with pytest.raises(ValueError, match="'crop' is not supported.*'square'"):
        Cropping()
    for mode in RESIZE_MODES:
        type("Ok", (Config,), {"IMAGE_RESIZE_MODE": mode})()
