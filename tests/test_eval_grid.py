"""Dense baseline grids: names parse, fractional factors code, screening keeps the rate range."""

import numpy as np
from PIL import Image

from ulic.evaluation.baselines import parse_setting, run_setting
from ulic.evaluation.grid import candidates, screen


def test_candidates_parse_and_include_fractional_factors():
    names = candidates("jpeg", 20)
    assert "jpeg:d1.5:q1" in names and "jpeg:d4:q41" in names
    assert all(parse_setting(n)[0] == "jpeg" for n in names)


def test_fractional_downscale_codes_at_original_size(photo):
    c = run_setting(photo, "jpeg:d1.5:q30")
    assert c.image.shape == photo.shape and c.nbytes > 0


def test_screen_keeps_only_settings_in_the_rate_range(tmp_path, photo):
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    settings = ["jpeg:d4:q5", "jpeg:d1.5:q60"]
    rates = dict(screen(settings, [str(path)], 0.0, 100.0, workers=1))
    assert set(rates) == set(settings) and rates["jpeg:d4:q5"] < rates["jpeg:d1.5:q60"]
    lo = float(np.mean(list(rates.values())))
    assert [s for s, _ in screen(settings, [str(path)], lo, 100.0, workers=1)] == ["jpeg:d1.5:q60"]
