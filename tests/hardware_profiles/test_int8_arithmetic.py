"""The scoring CPU, its int8 arithmetic and the policy that follows: the same on any CPU."""

import pytest
from profile_files import GOOD, write_profile

from edgeshrink.core.errors import ProfileError
from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu, parse_cpuinfo
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic, weight_range_text
from edgeshrink.hardware_profiles.latency_model import fitted_elsewhere

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse4_2 avx avx2 fma bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse4_2 avx avx2 fma bmi2 sha_ni
"""
XEON_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx avx2 avx512f avx512bw avx512_vnni amx_int8 avx_vnni
"""
SKYLAKE_512 = """model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz
flags\t\t: avx2 avx512f avx512bw
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm bf16
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize("text,arch,model,features,saturates", [
    (EPYC_AVX2, "x86_64", "AMD EPYC 7B12", ("avx2",), True),
    (XEON_VNNI, "x86_64", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
     ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"), False),
    (SKYLAKE_512, "x86_64", "Intel(R) Xeon(R) CPU @ 2.00GHz", ("avx2", "avx512bw"), True),
    (GRAVITON, "aarch64", None, ("dotprod", "i8mm"), False),
])
def test_cpuinfo_gives_model_int8_features_and_saturation(text, arch, model, features,
                                                          saturates):
    cpu = parse_cpuinfo(text, arch)
    assert cpu.int8_features == features
    assert cpu.int8_saturates is saturates
    if model is not None:
        assert cpu.model == model
    assert cpu.to_dict()["int8_saturates"] is saturates
    assert CpuInfo.from_dict(cpu.to_dict()) == cpu
    assert ("can saturate" in cpu.describe()) is saturates


def test_this_machine_is_read_and_consistent():
    cpu = host_cpu()
    assert cpu.model and cpu.arch
    if cpu.is_x86 and {"avx512_vnni", "avx_vnni"} & set(cpu.int8_features):
        assert not cpu.int8_saturates


@pytest.mark.parametrize("text,saturates", [(EPYC_AVX2, True), (XEON_VNNI, False)])
def test_host_reduces_the_range_only_where_it_saturates_and_devices_never(text, saturates):
    cpu = parse_cpuinfo(text, "x86_64")
    host = int8_arithmetic(load_profile("host"), cpu)
    assert (host.accuracy_method, host.reduce_range) == ("host", saturates)
    for device in ("raspberry-pi-4", "phone-cortex-a76", "coral-edge-tpu", "stm32h7"):
        predicted = int8_arithmetic(load_profile(device), cpu)
        assert (predicted.accuracy_method, predicted.reduce_range) == ("reference", False)
    assert "[-64, 64]" in weight_range_text(True) and "VNNI" in weight_range_text(False)


def _host_like(tmp_path, cpu_block: str):
    text = GOOD.replace('latency_method = "predicted"', 'latency_method = "measured"')
    return write_profile(tmp_path, text + cpu_block)


def test_profiles_record_their_cpu_and_host_warns_once_elsewhere(tmp_path):
    block = ('[calibrated_on]\ncpu = "Intel(R) Xeon(R) \\"8481C\\""\narch = "x86_64"\n'
             'int8_features = ["avx2", "avx512_vnni"]\n')
    profile = _host_like(tmp_path, block)
    assert profile.calibrated_on.model == 'Intel(R) Xeon(R) "8481C"'
    assert profile.calibrated_on.int8_features == ("avx2", "avx512_vnni")
    elsewhere = parse_cpuinfo(EPYC_AVX2, "x86_64")
    warning = fitted_elsewhere(profile, elsewhere)
    assert warning.count("\n") == 0 and "AMD EPYC 7B12" in warning
    assert "edgeshrink profile calibrate" in warning
    assert fitted_elsewhere(profile, profile.calibrated_on) is None
    # A device's own profile is meant to be read elsewhere: no warning.
    device = write_profile(tmp_path, GOOD + block)
    assert fitted_elsewhere(device, elsewhere) is None
    # Every built-in measured profile says where it was calibrated.
    assert load_profile("host").calibrated_on is not None


@pytest.mark.parametrize("block,field", [
    ('[calibrated_on]\ncpu = "x"\narch = "x86_64"\nint8_features = ["avx9"]\n',
     "calibrated_on.int8_features"),
    ('[calibrated_on]\ncpu = "x"\narch = "x86_64"\nsocket = 1\n', "calibrated_on.socket"),
    ('[calibrated_on]\narch = "x86_64"\n', "calibrated_on.cpu"),
])
def test_bad_calibrated_on_names_the_field(tmp_path, block, field):
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")):
        _host_like(tmp_path, block)
