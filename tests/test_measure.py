"""The energy meter against fake NVML backends (no GPU needed), and the energy arithmetic."""
import pytest

from bench import metrics
from bench.measure import MIN_WINDOW_PERIODS, EnergyMeter, PowerSampler


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


class FakeNvml:
    """A GPU drawing `watts(t)`; its energy counter advances every `period` s (0: continuously)."""

    def __init__(self, clock, watts, period=0.0, counter=True, power=True):
        self.clock, self.watts, self.period, self.counter, self.power = clock, watts, period, counter, power

    def handle(self, uuid):
        if not uuid.startswith("GPU-"):
            raise RuntimeError("bad uuid")
        return uuid

    def _true_j(self, t, h):
        # the test power profiles switch level at most at t = 1 s: integrate the two pieces exactly
        a = min(t, 1.0)
        return self.watts(0.5, h) * a + (self.watts(1.5, h) * (t - 1.0) if t > 1.0 else 0.0)

    def energy_mj(self, h):
        if not self.counter:
            raise RuntimeError("Not Supported")
        t = self.clock()
        if self.period:
            t = (t // self.period) * self.period     # last update
        return int(self._true_j(t - 100.0, h) * 1000) if t > 100.0 else 0

    def power_mw(self, h):
        if not self.power:
            raise RuntimeError("Not Supported")
        return int(self.watts(self.clock() - 100.0, h) * 1000)

    def name(self, h):
        return "Fake H100"

    def power_limit_w(self, h):
        return 700.0

    def temperature_c(self, h):
        return 41.0


def meter_for(fake, clock, uuids=("GPU-a",)):
    return EnergyMeter(list(uuids), backend=fake, clock=clock, sleep=clock.sleep)


def test_counter_present_idle_power_and_window_energy():
    clock = Clock()
    fake = FakeNvml(clock, lambda t, h: 60.0 if t < 1.0 else 300.0)   # idle 60 W, then busy
    m = meter_for(fake, clock)
    assert m.available and m.mode == "counter"
    assert m.measure_idle(1.0, poll_s=0.01) == pytest.approx(60.0, rel=1e-3)
    e0 = m.read_j()
    clock.sleep(2.0)
    e1 = m.read_j()
    assert e1[0] - e0[0] == pytest.approx(600.0, rel=1e-3)
    info = m.info()
    assert info["gpus"][0]["power_limit_w"] == 700.0 and info["gpus"][0]["temperature_c"] == 41.0
    assert info["idle_w"] == pytest.approx(60.0, rel=1e-3)


def test_two_gpus_are_metered_separately_and_summed():
    clock = Clock()
    fake = FakeNvml(clock, lambda t, h: 50.0 if h == "GPU-a" else 70.0)
    m = meter_for(fake, clock, uuids=("GPU-a", "GPU-b"))
    m.measure_idle(0.5, poll_s=0.01)
    assert m.idle_w_per_gpu == pytest.approx([50.0, 70.0], rel=1e-2)
    assert m.idle_w == pytest.approx(120.0, rel=1e-2)
    assert len(m.info()["gpus"]) == 2


def test_counter_missing_falls_back_to_power_sampling():
    clock = Clock()
    fake = FakeNvml(clock, lambda t, h: 100.0 if t < 1.0 else 250.0, counter=False)
    m = meter_for(fake, clock)
    assert m.mode == "power_sampling" and "Not Supported" in m.info()["counter_error"]
    s = m.sampler
    e0 = s.read_j()[0]
    for _ in range(100):                  # drive the sampler by hand: 10 ms samples over 1 s
        clock.sleep(0.01)
        s.poll()
    assert s.read_j()[0] - e0 == pytest.approx(100.0, rel=1e-2)
    for _ in range(100):
        clock.sleep(0.01)
        s.poll()
    assert s.read_j()[0] - e0 == pytest.approx(350.0, rel=2e-2)   # one trapezoid straddles the jump
    assert m.min_window_s == pytest.approx(MIN_WINDOW_PERIODS * 0.01)


def test_no_counter_and_no_power_means_unavailable_with_reason():
    clock = Clock()
    m = meter_for(FakeNvml(clock, lambda t, h: 1.0, counter=False, power=False), clock)
    assert not m.available and m.read_j() is None and m.measure_idle(1.0) is None
    assert "neither an energy counter" in m.info()["reason"]
    cpu = EnergyMeter([])
    assert not cpu.available and cpu.info()["reason"].startswith("no GPU")


def test_broken_nvml_gives_a_reason_not_a_crash():
    class Broken:
        def handle(self, uuid):
            raise RuntimeError("NVML Shared Library Not Found")
    m = EnergyMeter(["GPU-a"], backend=Broken())
    assert not m.available and "NVML Shared Library Not Found" in m.reason


def test_coarse_counter_period_is_measured_and_short_windows_flagged():
    clock = Clock()
    fake = FakeNvml(clock, lambda t, h: 80.0, period=0.1)     # advances in 8 J steps every 100 ms
    m = meter_for(fake, clock)
    m.measure_idle(2.0, poll_s=0.002)
    assert m.update_period_s == pytest.approx(0.1, abs=0.005)
    assert m.min_window_s == pytest.approx(MIN_WINDOW_PERIODS * 0.1, abs=0.05)
    assert m.idle_w == pytest.approx(80.0, rel=0.1)   # within one step over 2 s
    # a 30 ms window reads either 0 or one whole step: not to be trusted alone
    clock.t = 103.005
    a = m.read_j()[0]
    clock.sleep(0.03)
    assert m.read_j()[0] - a == 0.0


def _batch(i, seconds, energy, t0, c0, short, idle=50.0, gap=0.0, session="s"):
    return {"batch_latency_s": seconds, "batch_energy_j": energy, "batch_energy_short": short,
            "batch_t_start": t0, "batch_t_end": t0 + seconds, "batch_counter_start_j": c0,
            "batch_counter_end_j": c0 + energy, "idle_w": idle, "energy_min_window_s": 1.0, "session": session}


def test_idle_baseline_arithmetic_gross_and_net():
    # two long windows: 2 s at 300 J and 3 s at 420 J, idle 50 W
    b = [_batch(0, 2.0, 300.0, 0.0, 0.0, False), _batch(1, 3.0, 420.0, 2.5, 320.0, False)]
    e = metrics.method_energy(b)
    assert e["energy_method"] == "windows"
    assert e["energy_j"] == pytest.approx(720.0)
    assert e["energy_net_j"] == pytest.approx(720.0 - 50.0 * 5.0)


def test_short_windows_are_attributed_over_their_span_not_zeroed():
    # 10 windows of 0.2 s (counter resolution 1 s) with 0.05 s gaps; the coarse counter read 0 in
    # most windows and a whole step in some. The span (2.45 s) holds 490 J: 200 W throughout.
    bs, t, c = [], 0.0, 0.0
    readings = [0, 0, 200, 0, 0, 0, 200, 0, 0, 90]   # what a stepping counter showed per window
    for i, r in enumerate(readings):
        bs.append(_batch(i, 0.2, float(r), t, c, True))
        t += 0.25
        c += 49.0                                      # counter at each window start (true energy)
    bs[-1]["batch_counter_end_j"] = 490.0
    bs[-1]["batch_t_end"] = 2.45
    e = metrics.method_energy(bs)
    assert e["energy_method"] == "span" and e["short_windows"] == 10
    assert e["energy_j"] == pytest.approx(490.0 * 2.0 / 2.45)      # 200 W x 2 s of decode
    assert e["energy_net_j"] == pytest.approx(490.0 * 2.0 / 2.45 - 50.0 * 2.0)
    assert "attributed" in e["note"]


def test_a_span_shorter_than_the_resolution_gives_null_with_reason():
    e = metrics.method_energy([_batch(0, 0.2, 0.0, 0.0, 0.0, True)])
    assert e["energy_j"] is None and "shorter than the energy counter's resolution" in e["note"]


def test_no_meter_gives_null_energy():
    b = _batch(0, 1.0, 0.0, 0.0, 0.0, None)
    b["batch_energy_j"] = None
    assert metrics.method_energy([b])["energy_j"] is None
