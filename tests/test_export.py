"""SavedModel export: one signature per task, answered by a TensorFlow-only client
(no keras_multimodel, keras_hub or JAX importable) exactly as `generate` answers."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_multimodel as kmm
from keras_multimodel.data import bundled
from keras_multimodel.errors import InputError
from keras_multimodel.export.saved_model import _samplers

EXAMPLES = 3  # real test examples per bundled task

pytestmark = pytest.mark.backends(
    "tensorflow", "jax", reason="a SavedModel is exported from TensorFlow or JAX (jax2tf)"
)
# Every bundled task exported and served by a TensorFlow-only process (large).
SERVED_BACKEND = pytest.mark.backends(
    "jax", reason="the whole export, once: jax2tf converts every modality's decoding"
)

CLIENT = r'''
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    """Serving needs TensorFlow and tensorflow-text only: these cannot be imported."""
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "keras_multimodel", "keras_hub"):
            raise ImportError(f"{name} is not available to the client")

sys.meta_path.insert(0, Refuse())
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401 (registers the SentencePiece ops)

requests = np.load(sys.argv[1], allow_pickle=False)
results = {"outputs": {}, "errors": {}, "signatures": {}}

def decoded(outputs):
    return {key: value.numpy().tolist() if value.dtype != tf.string
            else [v.decode("utf-8") for v in value.numpy().reshape(-1)]
            for key, value in outputs.items()}

def call(model, signature, **inputs):
    return model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})

def inputs_of(task):
    prefix = f"{task}/"
    return {k[len(prefix):]: requests[k] for k in requests.files if k.startswith(prefix)}

for directory in sys.argv[2:]:
    model = tf.saved_model.load(directory)
    if directory == sys.argv[2]:
        for name, function in model.signatures.items():
            results["signatures"][name] = sorted(function.structured_input_signature[1])
    for task in model.signatures:
        if task != "serving_default":
            outputs = call(model, task, **inputs_of(task))
            results["outputs"][f"{directory}:{task}"] = decoded(outputs)

# Bad requests, on the first SavedModel: each must fail (or be answered) alone.
model = tf.saved_model.load(sys.argv[2])
text, image = "translate_en_es", "classify_image"
audio = inputs_of("transcribe_speech")
nan = audio["waveform"].copy(); nan[0, 5] = np.nan
cases = {
    "empty text": lambda: call(model, text, text=np.array(["", "   ", "God is love."])),
    "zero batch": lambda: call(model, text, text=np.zeros([0], "U1")),
    "zero image batch": lambda: call(model, image, image=np.zeros([0, 28, 28, 1], "uint8")),
    "too long text": lambda: call(model, text, text=np.array(["word " * 200])),
    "other image size": lambda: call(model, image, image=np.zeros([1, 32, 32, 1], "uint8")),
    "other channels": lambda: call(model, image, image=np.zeros([1, 28, 28, 3], "uint8")),
    "2-D text": lambda: call(model, text, text=np.array([["God is love.", "Hi."]] * 2)),
    "scalar text": lambda: call(model, text, text=np.array("God is love.")),
    "not UTF-8": lambda: call(model, text, text=np.array([b"caf\xe9 \xff"])),
    "audio length 0": lambda: call(model, "transcribe_speech", waveform=audio["waveform"],
                                   length=np.zeros_like(audio["length"])),
    "audio length beyond": lambda: call(model, "transcribe_speech",
                                        waveform=audio["waveform"],
                                        length=audio["length"] + 10**6),
    "audio NaN": lambda: call(model, "transcribe_speech", waveform=nan, length=audio["length"]),
    "audio rows differ": lambda: call(model, "transcribe_speech",
                                      waveform=np.zeros([0, 16000], "float32"),
                                      length=np.array([5], "int32")),
    "audio too long": lambda: call(model, "transcribe_speech",
                                   waveform=np.zeros([1, 10**6], "float32"),
                                   length=np.array([10], "int32")),
}
for case, run in cases.items():
    try:
        results["outputs"][case] = decoded(run())
    except Exception as error:  # every bad request is answered by an error alone
        results["errors"][case] = f"{type(error).__name__}: {error}"
# The model still answers a good request, as before the bad ones.
results["outputs"]["after"] = decoded(call(model, text, **inputs_of(text)))
results["modules"] = sorted({m.split(".")[0] for m in sys.modules} &
                            {"jax", "jaxlib", "keras_multimodel", "keras_hub"})
print(json.dumps(results))
'''


def run_client(requests, *directories):
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, str(requests), *map(str, directories)],
        capture_output=True,
        text=True,
        timeout=900,
        # A serving machine: no JAX, and Keras (which tensorflow-text imports) on its
        # default TensorFlow backend.
        env={key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _raw_inputs(task):
    """The first real test examples of a bundled task, as its serving inputs take them."""
    record = bundled.get(task)
    split = "real" if task == "transcribe_speech" else "test"  # real recordings: no synthesis
    inputs, _ = record.load_examples(split)
    inputs = inputs[:EXAMPLES]
    if isinstance(record.inputs, bundled.AudioFormat):
        net = record.inputs.modality(None)
        return record.inputs.model_inputs(inputs, net, None)  # padded like predict/evaluate
    if isinstance(record.inputs, bundled.ImageFormat):
        return {"image": np.stack(inputs)}
    return {"text": np.array(inputs)}


@pytest.fixture(scope="module")
def bundled_model():
    tokenizer = kmm.data.train_tokenizer(bundled.training_texts(), 4000)
    return kmm.MultiModel(bundled.make_tasks(tokenizer), "tiny", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def exported(bundled_model, tmp_path_factory):
    """Every bundled task exported with greedy decoding, and one with beam search."""
    root = tmp_path_factory.mktemp("export")
    names = bundled.label_names(bundled.PAPER_TASKS)
    bundled_model.export(
        root / "greedy", label_names=names, verbose=False
    )
    bundled_model.export(root / "beam", tasks=["translate_en_es"], sampler="beam", verbose=False)
    requests = {}
    for task in bundled.PAPER_TASKS:
        for key, value in _raw_inputs(task).items():
            requests[f"{task}/{key}"] = value
    np.savez(root / "requests.npz", **requests)
    return root


@pytest.fixture(scope="module")
def served(exported):
    """What the TensorFlow-only client answered, good requests and bad."""
    return run_client(exported / "requests.npz", exported / "greedy", exported / "beam")


def _expected(model, task, sampler="greedy"):
    inputs = _raw_inputs(task)
    inputs = list(inputs["text"]) if set(inputs) == {"text"} else inputs.get("image", inputs)
    return model.generate(task, inputs, sampler=sampler)


@pytest.fixture(scope="module")
def small_export(bundled_model, tmp_path_factory):
    """A label task and a text task, exported and loaded in this process."""
    import tensorflow as tf

    tasks = ["classify_image", "translate_en_es"]
    path = tmp_path_factory.mktemp("small_export")
    bundled_model.export(path, tasks=tasks, label_names=bundled.label_names(tasks), verbose=False)
    return tf.saved_model.load(str(path)).signatures


def test_an_export_answers_in_this_process_as_generate_does(bundled_model, small_export):
    import tensorflow as tf

    images = _raw_inputs("classify_image")["image"]
    answer = small_export["classify_image"](image=tf.constant(images))
    expected = _expected(bundled_model, "classify_image")
    assert answer["class_id"].numpy().tolist() == expected.tolist()
    texts = _raw_inputs("translate_en_es")["text"]
    answer = small_export["translate_en_es"](text=tf.constant(texts))
    decoded = [text.decode("utf-8") for text in answer["text"].numpy()]
    assert decoded == _expected(bundled_model, "translate_en_es")


@pytest.mark.parametrize(
    "task, name, value, message",
    [
        # A text signature takes a 1-D batch: a 2-D one must not be answered in part.
        ("translate_en_es", "text", [["God is love.", "Hi."], ["Good morning.", "Thanks."]],
         r"tensor text \[2,2\] is not compatible with expected shape \[\?\]"),
        ("translate_en_es", "text", "God is love.",
         r"tensor text \[\] is not compatible with expected shape \[\?\]"),
        ("translate_en_es", "text", [b"caf\xe9 \xff", b"ok"],
         "text inputs must be valid UTF-8; entry 0 is not"),
        ("classify_image", "image", np.zeros([1, 32, 32, 1], "uint8"),
         r"tensor image \[1,32,32,1\] is not compatible with expected shape \[\?,28,28,1\]"),
        ("classify_image", "image", np.zeros([1, 28, 28, 3], "uint8"),
         r"tensor image \[1,28,28,3\] is not compatible with expected shape \[\?,28,28,1\]"),
    ],
)  # fmt: skip
def test_an_export_refuses_bad_requests_naming_the_expected_shape(
    small_export, task, name, value, message
):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        small_export[task](**{name: tf.constant(value)})


def test_generate_takes_the_text_containers_users_have(bundled_model):
    """A list of str, a numpy str array, bytes, a tuple, an iterator and a string
    tensor give the same answer."""
    import tensorflow as tf

    texts = ["God is love.", "Good morning."]
    expected = bundled_model.generate("translate_en_es", texts)
    for given in (np.array(texts), [t.encode() for t in texts], np.array(texts, "S"),
                  tuple(texts), (t for t in texts), map(str, texts),
                  tf.constant(texts)):  # fmt: skip
        assert bundled_model.generate("translate_en_es", given) == expected
    assert bundled_model.generate("translate_en_es", texts[0]) == expected[:1]


@pytest.mark.parametrize(
    "task, inputs, message",
    [
        ("translate_en_es", ["caf\udce9"], r"generate\('translate_en_es'\): text 0 is not "
         r"valid UTF-8 \(byte 0xe9 at position 3\)"),
        ("translate_en_es", [b"ok", b"caf\xe9 \xff"], r"text 1 is not valid UTF-8 \(byte 0xe9"),
        ("translate_en_es", ["\ud800"], "text 0 is not valid UTF-8 \\(a lone surrogate"),
        ("translate_en_es", ["ok", 3], "entry 1 is int 3"),
        ("translate_en_es", np.array([["a", "b"]]), r"1-D batch of strings.*\(1, 2\)"),
        ("translate_en_es", None, "`inputs` is None"),
        ("translate_en_es", [], "the batch is empty"),
        ("translate_en_es", [1, 2], r"integer token ids of shape \(batch, length\).*shape=\(2,\)"),
        ("translate_en_es", [[5, 6], [7]], "rows of different shapes"),
        ("translate_en_es", [1, "a"], "entry 0 is int 1"),
        ("translate_en_es", {"God is love."}, "received a set, which has no order"),
        ("translate_en_es", [None, "a"], "entry 0 is NoneType None"),
        ("translate_en_es", [["a", "b"]], r"1-D batch of strings.*\(1, 2\)"),
        ("translate_en_es", np.array([], str), "the batch is empty"),
        ("translate_en_es", np.array([[5], [6, 7]], dtype=object), "array of Python objects"),
        ("classify_image", np.zeros([1, 32, 32, 1], "uint8"),
         r"takes images of 28x28 pixels \(the size it was trained on\); received 32x32"),
    ],
)  # fmt: skip
def test_generate_refuses_bad_inputs_in_one_line(bundled_model, task, inputs, message):
    with pytest.raises(InputError, match=message) as error:
        bundled_model.generate(task, inputs)
    assert "\n" not in str(error.value)


@pytest.mark.large
@SERVED_BACKEND
def test_a_tensorflow_only_client_gets_what_generate_gives_for_every_task(
    bundled_model, exported, served
):
    results = served
    assert results["modules"] == []  # served without keras_multimodel, keras_hub, JAX
    assert set(results["signatures"]) == {*bundled.PAPER_TASKS, "serving_default"}
    assert results["signatures"]["transcribe_speech"] == ["length", "waveform"]
    assert results["signatures"]["serving_default"] == ["image"]  # the first task
    for task in bundled.PAPER_TASKS:
        outputs = results["outputs"][f"{exported / 'greedy'}:{task}"]
        expected = _expected(bundled_model, task)
        if task == "classify_image":
            assert outputs["class_id"] == expected.tolist()
            names = bundled.get(task).targets.names
            assert outputs["class_name"] == [names[i] for i in expected]
            assert all(0 < p <= 1 for p in outputs["probability"])
        else:
            assert outputs["text"] == expected, task
            assert len(outputs["token_ids"]) == EXAMPLES
    beam = results["outputs"][f"{exported / 'beam'}:translate_en_es"]
    assert beam["text"] == _expected(bundled_model, "translate_en_es", sampler="beam")


@pytest.mark.large
@SERVED_BACKEND
def test_bad_requests_fail_alone_with_clear_errors(exported, served):
    errors, outputs = served["errors"], served["outputs"]
    assert outputs["empty text"]["text"][:2] == ["", ""]  # empty in, empty out
    assert outputs["empty text"]["text"][2] != ""
    assert outputs["zero batch"] == {"text": [], "token_ids": []}
    assert outputs["zero image batch"]["class_id"] == []
    assert "longer than 64 tokens" in errors["too long text"]
    expected_image = "is not compatible with expected shape [?,28,28,1]"
    assert expected_image in errors["other image size"], errors["other image size"]
    assert expected_image in errors["other channels"], errors["other channels"]
    assert "is not compatible with expected shape [?]" in errors["2-D text"]
    assert "is not compatible with expected shape [?]" in errors["scalar text"]
    assert "text inputs must be valid UTF-8" in errors["not UTF-8"]
    assert "below 1 sample" in errors["audio length 0"]
    assert "beyond the end of its waveform" in errors["audio length beyond"]
    assert "needs as many rows as" in errors["audio rows differ"]
    assert "must be finite" in errors["audio NaN"]
    assert "longer than this model takes" in errors["audio too long"]
    assert outputs["after"] == outputs[f"{exported / 'greedy'}:translate_en_es"]


def test_export_arguments_are_checked(bundled_model, tmp_path):
    with pytest.raises(InputError, match="format 'onnx' is not supported"):
        bundled_model.export(tmp_path / "x", format="onnx")
    with pytest.raises(InputError, match="`sampler` must be one of"):
        bundled_model.export(tmp_path / "x", sampler="top_k")
    with pytest.raises(InputError, match="received 'top_k' for 'parse_en'"):
        bundled_model.export(tmp_path / "x", sampler={"parse_en": "top_k"})
    with pytest.raises(ValueError, match="Unknown task 'parse'"):
        bundled_model.export(tmp_path / "x", sampler={"parse": "beam"})
    with pytest.raises(InputError, match="names 'parse_en', which is not among the exported"):
        bundled_model.export(tmp_path / "x", tasks=["caption_image"], sampler={"parse_en": "beam"})
    # A dict sets some tasks' decoding; the others decode greedily.
    tasks = ["parse_en", "caption_image"]
    assert _samplers({"parse_en": "beam"}, tasks, bundled_model) == {
        "parse_en": "beam",
        "caption_image": "greedy",
    }
    assert _samplers("beam", tasks, bundled_model) == dict.fromkeys(tasks, "beam")
    with pytest.raises(InputError, match="must name the task's 10 classes; received 2"):
        bundled_model.export(tmp_path / "x", label_names={"classify_image": ["a", "b"]})
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        bundled_model.export(tmp_path / "x", tasks=["nope"])
    with pytest.raises(ValueError, match="Unknown task 'classify'"):
        bundled_model.export(tmp_path / "x", input_signatures={"classify": {}})
    assert not (tmp_path / "x").exists()


@pytest.mark.large
@SERVED_BACKEND
def test_the_weights_are_stored_once(exported, bundled_model):
    variables = exported / "greedy" / "variables"
    stored = sum(f.stat().st_size for f in variables.iterdir())
    weights = sum(np.asarray(keras.ops.convert_to_numpy(v)).nbytes for v in bundled_model.weights)
    assert weights <= stored < 1.5 * weights  # six signatures, one copy of the weights
