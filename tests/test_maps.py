"""Anomaly maps: every neural method with pixels to point at gives a map whose pixels add up to
its score (so the map shows where the score comes from), and `oneclass score --maps` draws them."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import oneclass
from oneclass.cli import main

from conftest import MAPPED_METHODS


@pytest.mark.parametrize("method", MAPPED_METHODS)
def test_map_pixels_add_up_to_the_score_components(tiny_fitted, embedded_data, method):
    det = tiny_fitted[method]
    _, test = embedded_data
    x = test.images[::97][:24]
    maps = det.score_maps(x)
    comps = det.score_components(x)
    assert next(iter(maps)) == det.map_headline
    for name, m in maps.items():
        assert m.shape == (len(x), det.image_size, det.image_size) and np.isfinite(m).all(), name
        if name not in comps:
            continue
        reduce = m.sum if det.map_reduction == "sum" else m.mean
        np.testing.assert_allclose(reduce(axis=(1, 2)), comps[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # the maps of different images differ (not one map broadcast to every image)
    assert not np.allclose(maps[det.map_headline][0], maps[det.map_headline][1])


def test_oled_maps_hold_the_mask_modules_activation_and_s_avg(tiny_fitted, embedded_data):
    det = tiny_fitted["oled"]
    x = embedded_data[1].images[:8]
    maps = det.score_maps(x)
    assert set(maps) == {"avg", "rec", "mask", "cont", "mg"}
    np.testing.assert_allclose(maps["mg"], det.activation_map(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["avg"], (maps["rec"] + maps["mask"] + maps["cont"]) / 3)
    np.testing.assert_allclose(maps["avg"].mean(axis=(1, 2)), det.score_samples(x), rtol=1e-4, atol=1e-5)
    assert "mg" not in tiny_fitted["cae"].score_maps(x)  # the CAE has no mask module


def test_methods_without_pixels_say_so(tiny_fitted, embedded_data):
    x = embedded_data[1].images[:4]
    with pytest.raises(oneclass.OneClassError, match="deep-svdd.*no per-pixel anomaly map"):
        tiny_fitted["deep-svdd"].score_maps(x)
    svm = oneclass.create("ocsvm", "mnist").fit(embedded_data[0].images[:200])
    with pytest.raises(oneclass.OneClassError, match="ocsvm.*scores whole images"):
        svm.score_maps(x)


def test_cli_score_writes_one_overlay_per_image(tiny_fitted, embedded_data, tmp_path):
    model = tiny_fitted["dae"].save(tmp_path / "m.oneclass")
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    imgs = embedded_data[1].images[:3, 0].numpy()
    names = ["a.png", "b.png", "sub/c.png"]
    for name, img in zip(names, imgs):
        Image.fromarray(img).resize((56, 56)).save(folder / name)
    out = tmp_path / "maps"
    r = CliRunner().invoke(main, ["score", "--model", str(model), "--input", str(folder), "--output",
                                  str(tmp_path / "s.csv"), "--maps", str(out)])
    assert r.exit_code == 0, r.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a_map.png", "b_map.png", "sub/c_map.png"]
    overlay = np.asarray(Image.open(out / "a_map.png"))
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and overlay.shape[0] >= 56
    # the image and the map side by side: the left half is the grey image itself
    left = overlay[:, : overlay.shape[1] // 2]
    assert np.abs(left[..., 0].astype(int) - left[..., 1]).max() <= 1
    assert "3 anomaly maps (rec) in" in r.output


def test_a_runs_examples_picture_shows_each_image_and_beneath_it_its_map(tiny_fitted, embedded_data):
    """`examples/classC_seedS.png`: a row of the most and one of the least novel images, each with
    its map beneath (inferno: orange and yellow) where the method gives maps; grey images alone
    where it does not."""
    import io

    from oneclass.maps import examples_png
    _, test = embedded_data
    examples = {"most novel": [{"index": i, "score": 2.0 - i / 10, "novel": True} for i in range(6)],
                "least novel": [{"index": 20 + i, "score": i / 10, "novel": False} for i in range(6)]}
    svm = oneclass.create("ocsvm", "mnist").fit(embedded_data[0].images[:200])
    pictures = {name: np.asarray(Image.open(io.BytesIO(examples_png(det, test.images, examples))).convert("RGB"))
                for name, det in (("dae", tiny_fitted["dae"]), ("ocsvm", svm))}
    assert pictures["dae"].shape[0] == 2 * pictures["ocsvm"].shape[0]  # a map row under each image row
    for name, pic in pictures.items():
        r, g, b = (pic[..., k].astype(int) for k in range(3))
        grey = (np.abs(r - g) <= 2) & (np.abs(g - b) <= 2)
        assert (grey & (r < 20)).mean() > 0.1  # the digits' black backgrounds
        warm = (r > 200) & (g > 90) & (b < 120)  # the colour of a strong map pixel, in no grey or title
        assert (warm.sum() > 500) == (name == "dae"), name
