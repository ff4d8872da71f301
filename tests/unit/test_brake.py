from datetime import timedelta

import pytest

from service.domain.brake import BrakePolicy
from service.domain.errors import InvalidValue


def test_the_default_threshold_is_fifty_or_a_fifth_of_the_tenant() -> None:
    brake = BrakePolicy()
    assert brake.threshold(100) == 50  # small tenants: the minimum rules
    assert brake.threshold(1000) == 200
    assert brake.threshold(1_000_000) == 200_000


def test_the_threshold_counts_the_population_at_the_window_start_so_it_does_not_shrink_as_the_wave_goes() -> None:
    brake = BrakePolicy()
    # 1,000 users: the 200th deactivation leaves 800 active, 200 recent; still allowed. The 201st is not.
    assert not brake.exceeded(recent=200, active_now=800)
    assert brake.exceeded(recent=201, active_now=799)


def test_a_switched_off_brake_never_holds() -> None:
    assert not BrakePolicy(enabled=False).exceeded(recent=10_000, active_now=0)


def test_a_custom_policy() -> None:
    brake = BrakePolicy(minimum=5, percent=10, window=timedelta(minutes=10))
    assert brake.exceeded(recent=6, active_now=40)
    assert not brake.exceeded(recent=10, active_now=90)


@pytest.mark.parametrize("bad", [{"minimum": -1}, {"percent": 101}, {"percent": -5}, {"window": timedelta(0)}])
def test_nonsense_policies_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        BrakePolicy(**bad)  # type: ignore[arg-type]
