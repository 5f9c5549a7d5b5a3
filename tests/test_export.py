"""ONNX export: the exported graph (uint8 images → scores: input conversion, networks, saved
normalisation, combination) scores like PyTorch, for every exportable method."""
import copy
import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import oneclass
from oneclass.cli import main
from oneclass.export import export_onnx

from conftest import EXPORTED_METHODS


@pytest.mark.slow
@pytest.mark.parametrize("method", EXPORTED_METHODS)
def test_onnx_scores_equal_pytorch_scores(tiny_fitted, embedded_data, tmp_path, method):
    det = tiny_fitted[method]
    info = export_onnx(det, tmp_path / "m.onnx")
    assert info["outputs"] == ["score", *det.components]
    images = det.prepare(embedded_data[1].images[::40]).numpy()  # 50 images of every digit
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    ours = det.score_components(images)
    for batch in (images, images[:1]):  # any batch size, not the example's
        outs = dict(zip(info["outputs"], session.run(None, {"images": batch})))
        for name, onnx_scores in [("score", outs["score"]), *((c, outs[c]) for c in det.components)]:
            ref = ours[det.headline if name == "score" else name][:len(batch)]
            # ≤ 1e-4 on normalised (unit-scale) scores; raw sums of hundreds of pixel terms
            # (−ELBO, DAE's squared error) also carry float32 rounding of 1e-6 of their size
            assert np.abs(onnx_scores - ref).max() <= 1e-4 + 1e-6 * np.abs(ref).max(), name
    assert ours[det.headline].std() > 0  # scores that differ: a constant graph would not pass


def test_export_cli_and_what_cannot_be_exported(tiny_fitted, embedded_data, tmp_path):
    bare = copy.deepcopy(tiny_fitted["memae"])
    bare.threshold = bare.threshold_rule = None  # as a video model fitted without a quantile is saved
    model = bare.save(tmp_path / "m.oneclass")
    r = CliRunner().invoke(main, ["export", "--model", str(model), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert "exported memae" in r.output and "uint8 N×1×28×28" in r.output and (tmp_path / "m.onnx").stat().st_size > 1000
    assert "no threshold set" in r.output
    # with a threshold: in the file's metadata, exactly, so a deployment needs no second file
    det = oneclass.load(model, device="cpu")
    det.set_threshold(embedded_data[1].images[:50], quantile=0.9)
    r = CliRunner().invoke(main, ["export", "--model", str(det.save(model)), "--out", str(tmp_path / "t.onnx")])
    assert r.exit_code == 0 and "in its metadata (oneclass.threshold)" in r.output, r.output
    meta = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    props = meta.custom_metadata_map
    assert float(props["oneclass.threshold"]) == det.threshold
    assert json.loads(props["oneclass.threshold_rule"]) == {"quantile": 0.9}
    assert props["oneclass.method"] == "memae" and props["oneclass.headline"] == "rec"
    assert props["oneclass.input"] == "images: uint8 N×1×28×28" and json.loads(props["oneclass.config"]) == det.config
    svm = oneclass.create("ocsvm", "mnist").fit(embedded_data[0].images[:200])
    svm_file = svm.save(tmp_path / "svm.oneclass")
    r = CliRunner().invoke(main, ["export", "--model", str(svm_file), "--out", str(tmp_path / "svm.onnx")])
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "'ocsvm' is a scikit-learn model" in r.output and "cannot be exported" in r.output
    assert not (tmp_path / "svm.onnx").exists()
    with pytest.raises(oneclass.OneClassError, match=f"ONNX file {tmp_path} is a folder"):
        export_onnx(tiny_fitted["memae"], tmp_path)  # refused before the export's work


def test_video_models_are_not_exported_and_say_why():
    from oneclass.export import exportable
    for method in ("oled", "alocc", "lsa"):
        why = exportable(oneclass.create(method, "ped2", device="cpu"))
        assert why is not None and "video clips" in why and "only image models are exported" in why
    assert exportable(oneclass.create("oled", "mnist", device="cpu")) is None
