"""`train.mixed_precision: auto`: bfloat16 where the CPU has it, float32 elsewhere; and the stage
fingerprint counts `auto` as what it chooses."""

from unittest import mock

from translator.pipelines.stages import train_section

from translator import precision
from translator.config import load_config

from .conftest import TINY


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / f"cpuinfo-{flags}"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx512f {flags}\n")
    return path


def test_auto_is_bfloat16_on_a_bfloat16_cpu_and_float32_elsewhere(tmp_path):
    bf16, plain = _cpuinfo(tmp_path, "avx512_bf16"), _cpuinfo(tmp_path, "avx2")
    with mock.patch.object(precision, "_has_accelerator", return_value=False):
        assert precision.resolve_precision("auto", bf16) == "mixed_bfloat16"
        assert precision.resolve_precision("auto", plain) == "none"
        assert precision.resolve_precision("none", bf16) == "none"
        assert precision.resolve_precision("mixed_float16", plain) == "mixed_float16"
    with mock.patch.object(precision, "_has_accelerator", return_value=True):
        assert precision.resolve_precision("auto", bf16) == "none"  # a GPU: chosen per card


def test_fingerprint_counts_auto_as_the_precision_it_chooses():
    def section(value: str, chooses: str) -> dict:
        config = load_config(TINY, overrides=[f"train.mixed_precision={value}"])
        with mock.patch(
            "translator.pipelines.stages.resolve_precision", lambda v: chooses if v == "auto" else v
        ):
            return train_section(config)

    assert section("auto", "mixed_bfloat16") == section("mixed_bfloat16", "none")
    assert section("auto", "none") == section("none", "none")
    assert "mixed_precision" not in section("none", "none")  # runs from before keep theirs
