import keras
import pytest

from keras_multimodel import demo


@pytest.mark.large
@pytest.mark.backends("torch", reason="the demo command's training, once")
def test_demo_trains_and_beats_the_baseline(tmp_path):
    result = demo.run(steps_per_epoch=60, epochs=2, batch_size=32, output_dir=tmp_path, verbose=0)
    assert result["accuracy"] > result["baseline_accuracy"] + 0.1
    loaded = keras.saving.load_model(tmp_path / "digit_sorter.keras")
    assert loaded.get_layer("moe").num_experts == 8
