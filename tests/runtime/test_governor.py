"""The governor steps down under injected latency, back up with headroom, and follows situations."""
from runtime.config import CameraConfig, ModelConfig, RuntimeConfig, SituationConfig
from runtime.governor import DOWN_AFTER, UP_AFTER, WARMUP, Governor


def model(task, variant, conditions=("any",), ms=10.0):
    return ModelConfig(task=task, variant=variant, file=f"models/{task}-{variant}.onnx", sha256="0", decoder="x",
                       inputs=(), outputs=(), conditions=conditions, est_latency_ms=ms)


def config(situations=()):
    return RuntimeConfig(
        site="s", timezone="Europe/Berlin", device="d", role="camera", board="host-cpu", threads=1,
        cameras=(CameraConfig(id="c", source="file:x", resolution=(640, 360), fps=10.0),),
        models={"detector": (model("detector", "det-416", ms=40), model("detector", "det-320", ms=20),
                             model("detector", "det-256", ms=10), model("detector", "det-320-night", ("night", "rain"))),
                "pose": (model("pose", "pose-m", ms=8), model("pose", "pose-s", ms=3))},
        situations=tuple(situations),
    )


def test_overrun_steps_the_heaviest_task_down_then_headroom_brings_it_back():
    gov = Governor(config())  # 10 fps: 100 ms per frame
    switches = []
    for _ in range(WARMUP + DOWN_AFTER + 2):
        switches += gov.observe(150.0, {"detector": 120.0, "pose": 30.0})
    assert [(s.task, s.old, s.new) for s in switches] == [("detector", "det-416", "det-320")]
    assert "frame time" in switches[0].reason
    for _ in range(DOWN_AFTER * 3):
        switches += gov.observe(150.0, {"detector": 60.0, "pose": 90.0})
    assert gov.current("pose").variant == "pose-s"
    back = []
    for _ in range(UP_AFTER * 4):
        back += gov.observe(20.0)
    assert gov.assignment() == {"detector": "det-416", "pose": "pose-m"}
    assert back, "stepping back up must be reported"


def test_a_jittery_frame_does_not_switch():
    gov = Governor(config())
    out = []
    for i in range(100):
        out += gov.observe(200.0 if i % 10 == 5 else 60.0)
    assert out == []


def test_night_schedule_switches_to_the_specialised_variant_and_back():
    night = SituationConfig(id="night", schedule=((19 * 60, 6 * 60),), prefer="accuracy")
    gov = Governor(config([night]))
    noon = 1751968800.0  # 2025-07-08 10:00 UTC = 12:00 in Berlin
    evening = noon + 9 * 3600  # 21:00 in Berlin
    assert gov.evaluate_situations(noon) == []
    switches = gov.evaluate_situations(evening)
    assert [(s.task, s.new) for s in switches] == [("detector", "det-320-night")]
    assert gov.current("pose").variant == "pose-m"  # no night pose: best tier for prefer accuracy
    assert [s.new for s in gov.evaluate_situations(noon)] == ["det-416"]


def test_flag_and_brightness_situations():
    rain = SituationConfig(id="rain", flag="rain", prefer="accuracy")
    dark = SituationConfig(id="dark", brightness_below=40, prefer="speed")
    gov = Governor(config([rain, dark]))
    gov.set_flag("rain")
    assert gov.evaluate_situations(0.0)[0].new == "det-320-night"  # its card lists rain
    gov.set_flag("rain", False)
    gov.evaluate_situations(0.0)
    sw = gov.evaluate_situations(0.0, brightness=20)
    assert gov.current("detector").variant == "det-256" and sw


def test_model_pack_swaps_between_frames():
    gov = Governor(config())
    sw = gov.swap_pack({"detector": (model("detector", "det-416-v2"), model("detector", "det-256-v2"))})
    assert [(s.old, s.new, s.reason) for s in sw] == [("det-416", "det-416-v2", "model pack")]
