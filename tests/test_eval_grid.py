"""Dense baseline grids: names parse, fractional factors code, the rate search brackets targets."""

import math

import pytest
from PIL import Image

from ulic.evaluation.baselines import parse_setting, run_setting
from ulic.evaluation.grid import bracket, dense_settings, mean_bpp


def test_fractional_downscale_codes_at_original_size(photo):
    c = run_setting(photo, "jpeg:d1.5:q30")
    assert c.image.shape == photo.shape and c.nbytes > 0


def test_bracket_finds_adjacent_integers_with_few_probes():
    probed = []

    def rate(k: int) -> float:
        probed.append(k)
        return 0.001 * math.exp(0.08 * k)  # increasing, log-linear like a codec's rate

    for target in (0.0015, 0.02, 0.05, 0.1):
        probed.clear()
        a, b = bracket(rate, 0, 60, target)
        assert b == a + 1 and rate(a) <= target <= rate(b)
        assert len(set(probed)) <= 10  # bisection alone would need ~8 on top of the two ends
    assert bracket(rate, 0, 60, 0.5) is None and bracket(rate, 0, 60, 1e-5) is None


def test_dense_settings_bracket_the_target(tmp_path, photo):
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    ends = [mean_bpp(f"jpeg:d2:q{q}", [str(path)]) for q in (1, 60)]
    target = math.sqrt(ends[0] * ends[1])  # inside the reachable range
    found = dict(dense_settings("jpeg", [str(path)], [target], factors=(2.0,), workers=1))
    assert all(parse_setting(s)[:2] == ("jpeg", 2.0) for s in found)
    assert min(found.values()) <= target <= max(found.values())
    below = max(r for r in found.values() if r <= target)
    above = min(r for r in found.values() if r >= target)
    q = {r: parse_setting(s)[2] for s, r in found.items()}
    assert q[above] - q[below] == 1  # adjacent qualities


def test_lower_hull_only_drops_points_above_the_chord():
    from ulic.evaluation.report import lower_hull

    xs, ys = lower_hull([0.01, 0.02, 0.03, 0.04], [0.8, 0.7, 0.69, 0.5])
    assert xs == pytest.approx([0.01, 0.04]) and ys == [0.8, 0.5]  # 0.7 and 0.69 lie above the chord
    xs, ys = lower_hull([0.01, 0.02, 0.04], [0.8, 0.5, 0.45])
    assert ys == [0.8, 0.5, 0.45]  # convex already: all kept


def test_refinement_reports_how_much_a_coarser_grid_moves_the_envelope():
    from ulic.evaluation.grid import envelope, refinement

    settings = ["hevc:d2:q10", "hevc:d2:q11", "hevc:d2:q12", "hevc:d4:q30", "hevc:d4:q31"]
    results = {"bpp": [0.02, 0.025, 0.03, 0.018, 0.022], "lpips": [0.6, 0.57, 0.55, 0.62, 0.58], "setting": settings}
    out = refinement(results, [0.02, 0.025])
    assert out["all"] == envelope(results, [0.02, 0.025])
    assert all(a <= b for a, b in zip(out["all"], out["quality step 2"], strict=True))  # more settings: never worse
    assert out["change: without d4"][0] > 0 and set(out) >= {"without d2", "without d4", "change: quality step 2"}
